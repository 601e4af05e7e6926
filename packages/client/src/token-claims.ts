/**
 * This client's identity as its token names it (RFC 7519 claims `sub`, `cid` and `role`), read
 * without verifying the token: the services verify it, the certificate confirms it. Never taken
 * from the relay.
 */
import { fromBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { Role as RoleSchema } from '@latchkey/protocol';
import type { Identity } from './key-session.ts';

/** Contact, participant and role named by a token; null when it is not a JWT that names them. */
export function tokenClaims(token: string): Identity | null {
  try {
    const claims = JSON.parse(utf8Decode(fromBase64Url(token.split('.')[1] ?? ''))) as {
      sub?: unknown;
      cid?: unknown;
      role?: unknown;
    };
    const role = RoleSchema.safeParse(claims.role);
    if (typeof claims.sub === 'string' && typeof claims.cid === 'string' && role.success) {
      return { contactId: claims.cid, participantId: claims.sub, role: role.data };
    }
  } catch {
    // not a JWT
  }
  return null;
}
