/** @latchkey/tokens: participant tokens (JWT via jose, HS256 or EdDSA) and admin API keys. */
export {
  mintToken,
  verifyToken,
  createTokenVerifier,
  importTokenSigningKey,
  importTokenVerifyKey,
  generateTokenKeyPair,
  TOKEN_CLOCK_SKEW_SECONDS,
  type MintOptions,
  type VerifyOptions,
  type TokenSigningKey,
  type TokenVerifier,
  type TokenVerifierOptions,
} from './tokens.ts';
export {
  DEFAULT_ADMIN_KEY_ID,
  deriveAdminKey,
  adminAuthorization,
  parseAdminKey,
  createAdminAuthenticator,
  type AdminKey,
  type AdminAuthenticator,
  type AdminAuthOptions,
} from './admin-auth.ts';
export { parseIpAllowlist, ipAllowed, normaliseIp, LOOPBACK_ALLOWLIST } from './ip-allowlist.ts';
