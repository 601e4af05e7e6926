/**
 * Participant token claims (a JWT minted by the enterprise's backend). One token serves relay
 * and key service: its audience names both. The claim set is closed: anything else (a name,
 * an e-mail) makes the token invalid, so no personal data can ride along.
 */
import { z } from 'zod';
import { Id, Role } from './primitives.ts';

export const TOKEN_ISSUER = 'latchkey' as const;
export const AUDIENCE_RELAY = 'latchkey:relay' as const;
export const AUDIENCE_KEYS = 'latchkey:keys' as const;
/** Longest lifetime a participant token may have (seconds). */
export const MAX_TOKEN_TTL_SECONDS = 24 * 60 * 60;

const Seconds = z
  .number()
  .int()
  .min(0)
  .max(2 ** 40);

export const TokenClaims = z.strictObject({
  iss: z.literal(TOKEN_ISSUER),
  aud: z.union([z.string(), z.array(z.string()).min(1).max(4)]),
  sub: Id,
  cid: Id,
  role: Role,
  iat: Seconds,
  /** Not before (optional): the token is refused (AUTH_INVALID) until then. */
  nbf: Seconds.optional(),
  exp: Seconds,
  jti: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
});
export type TokenClaims = z.infer<typeof TokenClaims>;

/** JWS algorithms a participant token may use: HMAC (dev default) or Ed25519 (asymmetric). */
export const TOKEN_ALGORITHMS = ['HS256', 'EdDSA'] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

/** What relay and key service learn from a verified token. */
export interface Principal {
  contactId: string;
  participantId: string;
  role: Role;
  tokenId: string;
  expiresAt: number;
}
