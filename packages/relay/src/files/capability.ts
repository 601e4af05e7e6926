/**
 * Capability links (docs/protocol.md "Files (HTTP)"): `cap` = base64url of the JSON claims
 * (CapabilityClaims: blob, contact, participant, expiry), `.`, base64url of their HMAC-SHA-256
 * under a key derived from the relay's API secret with HKDF and a label of its own, so every
 * relay of a cluster (one API secret) verifies the others' links and the key signs nothing
 * else. The tag is compared in constant time before the claims are parsed.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  Capability,
  CapabilityClaims,
  LatchkeyError,
  type CapabilityClaims as Claims,
} from '@latchkey/protocol';

/** HKDF info of the link key: a key of its own, never the token or admin key. */
export const CAPABILITY_KEY_LABEL = 'latchkey.files.capability.v1';

/**
 * The link key: HKDF-SHA-256 of the API secret (empty salt); without a secret (EdDSA tokens
 * only), a random key of this process, so links work on the relay that made them only.
 */
export function capabilityKey(apiSecret: Uint8Array | undefined): Buffer {
  if (apiSecret === undefined) return randomBytes(32);
  return Buffer.from(hkdfSync('sha256', apiSecret, new Uint8Array(0), CAPABILITY_KEY_LABEL, 32));
}

function tag(key: Buffer, claims: string): Buffer {
  return createHmac('sha256', key).update(claims).digest();
}

/** Signs claims; returns the `cap` value. */
export function signCapability(key: Buffer, claims: Claims): string {
  const body = Buffer.from(JSON.stringify(CapabilityClaims.parse(claims))).toString('base64url');
  return `${body}.${tag(key, body).toString('base64url')}`;
}

/**
 * Verifies a `cap` value: shape, tag (constant time), claims, expiry.
 * @throws LatchkeyError FORBIDDEN for a malformed, forged or altered capability, AUTH_EXPIRED
 *   for an expired one.
 */
export function verifyCapability(key: Buffer, cap: unknown, nowMs: number): Claims {
  const forged = (): LatchkeyError => new LatchkeyError('FORBIDDEN', 'invalid link');
  if (!Capability.safeParse(cap).success) throw forged();
  const [body = '', sig = ''] = (cap as string).split('.');
  const given = Buffer.from(sig, 'base64url');
  const want = tag(key, body);
  if (given.length !== want.length || !timingSafeEqual(given, want)) throw forged();
  let claims: Claims;
  try {
    claims = CapabilityClaims.parse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
  } catch {
    throw forged();
  }
  if (claims.e * 1000 <= nowMs) throw new LatchkeyError('AUTH_EXPIRED', 'link expired');
  return claims;
}
