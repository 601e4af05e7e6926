/**
 * The request-authentication checks of `latchkey kms check` (kms-check.ts), for either model
 * (docs/key-management.md "Authentication"): unsigned, badly signed, unknown client, tampered
 * body or path, stale or future timestamp, replayed nonce.
 */
import { toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import { KM_PATHS } from '@latchkey/keys';
import { expect, type Check, type KmsCheckSettings } from './_kms-check.ts';
import type { Raw } from './kms-check-raw.ts';

/** More than the 5-minute window of the API, either way. */
const SKEW_MS = 6 * 60_000;

/** Request authentication (docs/key-management.md "Authentication"), for either model. */
export async function authChecks(
  s: KmsCheckSettings,
  raw: Raw,
  run: string,
  check: Check,
): Promise<void> {
  // A POST with a body the key manager would accept, so that only the signature is at fault.
  const post =
    s.model === 'wrap'
      ? {
          method: 'POST' as const,
          path: KM_PATHS.wrap(s.keyId),
          body: JSON.stringify({
            contactId: `${run}-auth`,
            epoch: 0,
            reason: 'create',
            key: toBase64Url(randomBytes(32)),
          }),
        }
      : {
          method: 'POST' as const,
          path: KM_PATHS.storeContact(`${run}-auth`),
          body: JSON.stringify({ reason: 'create' }),
        };
  const health = { method: 'GET' as const, path: KM_PATHS.health };
  await check('unsigned', async () => {
    await raw.refused({ ...post, sign: 'none' }, 401, ['AUTH_REQUIRED', 'AUTH_INVALID']);
  });
  await check('bad-signature', async () => {
    await raw.refused({ ...post, sign: { secret: randomBytes(32) } }, 401, ['AUTH_INVALID']);
  });
  await check('unknown-client', async () => {
    await raw.refused({ ...post, sign: { clientId: `${run}-nobody` } }, 401, ['AUTH_INVALID']);
  });
  await check('tampered-body', async () => {
    const other = post.body.replace('"create"', '"rotate"');
    await raw.refused({ ...post, sign: { body: other } }, 401, ['AUTH_INVALID']);
  });
  await check('tampered-path', async () => {
    await raw.refused({ ...post, sign: { path: KM_PATHS.storeContact(`${run}-elsewhere`) } }, 401, [
      'AUTH_INVALID',
    ]);
  });
  await check('stale-timestamp', async () => {
    await raw.refused({ ...health, sign: { now: Date.now() - SKEW_MS } }, 401, ['AUTH_EXPIRED']);
  });
  await check('future-timestamp', async () => {
    await raw.refused({ ...health, sign: { now: Date.now() + SKEW_MS } }, 401, ['AUTH_EXPIRED']);
  });
  await check('replayed-nonce', async () => {
    const first = await raw.send(health);
    expect(first.status === 200, `first request: want 200, got ${first.status}`);
    await raw.refused({ ...health, headers: first.headers }, 401, ['AUTH_INVALID']);
  });
}
