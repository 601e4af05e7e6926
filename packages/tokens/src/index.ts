/** @latchkey/tokens: mint and verify participant tokens (JWT via jose). */
export { mintToken, verifyToken, type MintOptions, type VerifyOptions } from './tokens.ts';
