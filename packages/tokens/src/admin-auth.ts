/**
 * Admin API authentication (docs/admin-api.md "Authentication"): the enterprise's API key,
 * sent as `Authorization: Bearer <key id>:<secret as base64url>` over TLS (or loopback).
 *
 * The server compares SHA-256 digests of the presented and the stored secret with
 * `crypto.timingSafeEqual`, so the comparison takes the same time whatever the input and its
 * length; an unknown key id is compared against a dummy so it takes that time too.
 *
 * In the dev default the admin key is derived from the API secret
 * (`HMAC-SHA256(apiSecret, "latchkey.v1.admin-api")`, key id `default`): whoever holds the API
 * secret can administer, and the token-signing secret itself never crosses the wire.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { LatchkeyError } from '@latchkey/protocol';
import { LOOPBACK_ALLOWLIST, ipAllowed, normaliseIp, parseIpAllowlist } from './ip-allowlist.ts';

/** One API key: a public id and a secret of at least 32 bytes. */
export interface AdminKey {
  id: string;
  secret: Uint8Array;
}

export const DEFAULT_ADMIN_KEY_ID = 'default';
const ADMIN_KEY_INFO = 'latchkey.v1.admin-api';
const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** The dev-default admin key derived from the API secret (see the module header). */
export function deriveAdminKey(apiSecret: Uint8Array): AdminKey {
  if (!(apiSecret instanceof Uint8Array) || apiSecret.length < 32) {
    throw new RangeError('API secret must be at least 32 bytes');
  }
  const secret = createHmac('sha256', apiSecret).update(ADMIN_KEY_INFO).digest();
  return { id: DEFAULT_ADMIN_KEY_ID, secret: Uint8Array.from(secret) };
}

/** The Authorization header value for `key`. */
export function adminAuthorization(key: AdminKey): string {
  return `Bearer ${key.id}:${Buffer.from(key.secret).toString('base64url')}`;
}

/**
 * Parses `id:secret` (as in LATCHKEY_ADMIN_KEY).
 * @throws RangeError on a malformed id or a secret under 32 bytes.
 */
export function parseAdminKey(text: string): AdminKey {
  const i = text.indexOf(':');
  const id = text.slice(0, i);
  const secretText = text.slice(i + 1).trim();
  if (i < 1 || !KEY_ID.test(id) || !/^[A-Za-z0-9_-]{43,}$/.test(secretText)) {
    throw new RangeError('admin key must be <id>:<base64url secret of at least 32 bytes>');
  }
  return { id, secret: Uint8Array.from(Buffer.from(secretText, 'base64url')) };
}

const digest = (b: Uint8Array | string): Buffer => createHash('sha256').update(b).digest();

/** Checks Authorization headers against a fixed set of admin keys. */
export interface AdminAuthenticator {
  /**
   * Returns the key id the header proves, or throws. The client address is checked first, so
   * nobody outside the allowlist learns anything about the keys.
   * @throws LatchkeyError FORBIDDEN from an address outside the allowlist, AUTH_REQUIRED
   *   without a bearer header, AUTH_INVALID on a wrong key.
   */
  check(header: string | undefined, clientAddress: string | undefined): string;
}

export interface AdminAuthOptions {
  /** IPs and CIDR ranges that may use the admin API. Default: loopback only. */
  ipAllowlist?: readonly string[];
}

/**
 * @throws RangeError when no key is given, a key id is malformed, a secret is under 32 bytes or
 *   an allowlist entry is not an IP or CIDR range.
 */
export function createAdminAuthenticator(
  keys: readonly AdminKey[],
  opts: AdminAuthOptions = {},
): AdminAuthenticator {
  if (keys.length === 0) throw new RangeError('at least one admin key is required');
  const allowed = parseIpAllowlist(opts.ipAllowlist ?? LOOPBACK_ALLOWLIST);
  const byId = new Map<string, Buffer>();
  for (const k of keys) {
    if (!KEY_ID.test(k.id)) throw new RangeError('admin key id must be 1-64 of [A-Za-z0-9_.-]');
    if (!(k.secret instanceof Uint8Array) || k.secret.length < 32)
      throw new RangeError('admin key secret must be at least 32 bytes');
    byId.set(k.id, digest(k.secret));
  }
  const dummy = digest('latchkey.v1.admin-api.no-such-key');
  return {
    check(header, clientAddress) {
      if (!ipAllowed(allowed, normaliseIp(clientAddress))) {
        throw new LatchkeyError('FORBIDDEN', 'admin API not allowed from this address');
      }
      const m =
        header === undefined
          ? null
          : /^Bearer +([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9_-]{1,1024}) *$/i.exec(header);
      if (!m || m[1] === undefined || m[2] === undefined) {
        throw new LatchkeyError('AUTH_REQUIRED', 'an admin API key is required');
      }
      const expected = byId.get(m[1]);
      const presented = digest(Buffer.from(m[2], 'base64url'));
      const same = timingSafeEqual(presented, expected ?? dummy);
      if (!same || expected === undefined)
        throw new LatchkeyError('AUTH_INVALID', 'invalid admin API key');
      return m[1];
    },
  };
}
