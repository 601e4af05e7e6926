/**
 * The wrap-model checks of `latchkey kms check` (kms-check.ts): the calls the key service's
 * wrapped key store makes through the HTTP wrapper (packages/keys/src/stores/key-store.ts,
 * packages/keys/src/wrappers/http.ts), in its order and with its `reason`s, then the key
 * manager's answers to a wrong key, contact, epoch or body, and its optional endpoints.
 */
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import {
  KM_PATHS,
  KmErrorResponse,
  KmWrapResponse,
  createHttpWrapper,
  type HttpKeyWrapper,
  type KmClientOptions,
} from '@latchkey/keys';
import {
  equalBytes,
  expect,
  expectDecryptFailed,
  type Check,
  type KmsCheckSettings,
} from './_kms-check.ts';
import type { Raw } from './kms-check-raw.ts';

/** The wrap model: what the key service's wrapped key store asks. */
export async function wrapChecks(
  s: KmsCheckSettings,
  client: KmClientOptions,
  raw: Raw,
  run: string,
  check: Check,
): Promise<void> {
  const wrapper: HttpKeyWrapper = createHttpWrapper({ ...client, keyId: s.keyId });
  const generating = createHttpWrapper({ ...client, keyId: s.keyId, useGenerate: true });
  const c = `${run}-a`;
  const k0 = randomBytes(32);
  const k1 = randomBytes(32);
  let w0: Uint8Array | undefined;
  let w1: Uint8Array | undefined;
  let operations: readonly string[] = [];
  try {
    await check('health', async () => {
      const h = await wrapper.health();
      expect(
        h.status === 'ok',
        `status ${h.status}${h.detail === undefined ? '' : `: ${h.detail}`}`,
      );
    });
    await check('metadata', async () => {
      const m = await wrapper.metadata();
      operations = m.operations;
      expect(m.keyId === s.keyId, `keyId ${m.keyId}, want ${s.keyId}`);
      expect(m.state === 'enabled', `state ${m.state}`);
      for (const op of ['wrap', 'unwrap'])
        expect(m.operations.includes(op), `operations lack ${op}`);
    });
    // A new contact: its epoch-0 key is wrapped with reason create.
    await check('wrap-create', async () => {
      w0 = await wrapper.wrap(k0, { contactId: c, epoch: 0, reason: 'create' });
    });
    // A participant asks for the key: unwrap with reason fetch.
    await check('unwrap-fetch', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const k = await wrapper.unwrap(w0, { contactId: c, epoch: 0, reason: 'fetch' });
      expect(equalBytes(k, k0), 'unwrap answered another key than the one wrapped');
    });
    // A kick, transfer or schedule adds an epoch: wrap with reason rotate.
    await check('wrap-rotate', async () => {
      w1 = await wrapper.wrap(k1, { contactId: c, epoch: 1, reason: 'rotate' });
      expect(w0 === undefined || !equalBytes(w0, w1), 'two keys wrapped to the same bytes');
    });
    await check('unwrap-rotated', async () => {
      expect(w1 !== undefined, 'no wrapped key (wrap-rotate failed)');
      const k = await wrapper.unwrap(w1, { contactId: c, epoch: 1, reason: 'fetch' });
      expect(equalBytes(k, k1), 'unwrap answered another key than the one wrapped');
    });
    await check('unwrap-old-epoch', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const k = await wrapper.unwrap(w0, { contactId: c, epoch: 0, reason: 'fetch' });
      expect(equalBytes(k, k0), 'unwrap answered another key than the one wrapped');
    });
    // contactId and epoch are additional authenticated data.
    await check('bound-to-epoch', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      await expectDecryptFailed(wrapper.unwrap(w0, { contactId: c, epoch: 1, reason: 'fetch' }));
    });
    await check('bound-to-contact', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      await expectDecryptFailed(
        wrapper.unwrap(w0, { contactId: `${run}-b`, epoch: 0, reason: 'fetch' }),
      );
    });
    await check('tampered-wrapped', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const t = Uint8Array.from(w0);
      t[t.length - 1] = (t[t.length - 1] ?? 0) ^ 1;
      await expectDecryptFailed(wrapper.unwrap(t, { contactId: c, epoch: 0, reason: 'fetch' }));
    });
    // Another key id must not open this key's wraps: unknown (404) or a separate key (422).
    await check('unknown-key-id', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const other = `${run}-unknown-kek`;
      const meta = await raw.send({ method: 'GET', path: KM_PATHS.key(other) });
      if (meta.status === 404) return '404';
      expect(
        meta.status === 200,
        `GET ${KM_PATHS.key(other)}: want 404 (or 200), got ${meta.status}`,
      );
      const a = await raw.send({
        method: 'POST',
        path: KM_PATHS.unwrap(other),
        body: JSON.stringify({ contactId: c, epoch: 0, reason: 'fetch', wrapped: toBase64Url(w0) }),
      });
      const code = KmErrorResponse.safeParse(a.json);
      expect(
        (a.status === 404 || a.status === 422) && code.success,
        `unwrap under key id ${other}: want 404 or 422 DECRYPT_FAILED, got ${a.status}`,
      );
      return `created on first use; ${a.status} ${code.data?.error.code ?? ''} under it`.trim();
    });
    // Optional endpoints: implemented and right, or 404.
    await check('generate', async () => {
      if (!operations.includes('generate')) {
        const a = await raw.send({
          method: 'POST',
          path: KM_PATHS.generate(s.keyId),
          body: JSON.stringify({ contactId: `${run}-g`, epoch: 0, reason: 'create' }),
        });
        expect(a.status === 404, `not in metadata operations: want 404, got ${a.status}`);
        return 'optional, not offered: 404';
      }
      const g = generating.generate;
      expect(g !== undefined, 'adapter without generate');
      const ctx = { contactId: `${run}-g`, epoch: 0, reason: 'create' } as const;
      const { key, wrapped } = await g(ctx);
      const k = await wrapper.unwrap(wrapped, { ...ctx, reason: 'fetch' });
      expect(equalBytes(k, key), 'the generated key does not unwrap to itself');
    });
    await check('rewrap', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const a = await raw.send({
        method: 'POST',
        path: KM_PATHS.rewrap(s.keyId),
        body: JSON.stringify({
          contactId: c,
          epoch: 0,
          reason: 'rewrap',
          wrapped: toBase64Url(w0),
        }),
      });
      if (!operations.includes('rewrap')) {
        expect(a.status === 404, `not in metadata operations: want 404, got ${a.status}`);
        return 'optional, not offered: 404';
      }
      const r = KmWrapResponse.safeParse(a.json);
      expect(a.status === 200 && r.success, `want 200 {wrapped, keyVersion}, got ${a.status}`);
      const k = await wrapper.unwrap(fromBase64Url(r.data.wrapped), {
        contactId: c,
        epoch: 0,
        reason: 'fetch',
      });
      expect(equalBytes(k, k0), 'the re-wrapped key unwraps to another key');
    });
    // A shred: the key service tells the key manager, which then refuses the contact (403).
    await check('destroy', async () => {
      const d = `${run}-d`;
      const key = randomBytes(32);
      const w = await wrapper.wrap(key, { contactId: d, epoch: 0, reason: 'create' });
      key.fill(0);
      if (!operations.includes('destroy')) {
        const a = await raw.send({
          method: 'POST',
          path: KM_PATHS.destroy(s.keyId),
          body: JSON.stringify({ contactId: d, reason: 'destroy' }),
        });
        expect(a.status === 404, `not in metadata operations: want 404, got ${a.status}`);
        return 'optional, not offered: 404';
      }
      const destroy = wrapper.destroyContact;
      expect(destroy !== undefined, 'adapter without destroy');
      await destroy.call(wrapper, d);
      await raw.refused(
        {
          method: 'POST',
          path: KM_PATHS.unwrap(s.keyId),
          body: JSON.stringify({
            contactId: d,
            epoch: 0,
            reason: 'fetch',
            wrapped: toBase64Url(w),
          }),
        },
        403,
        ['FORBIDDEN'],
      );
      await destroy.call(wrapper, d); // idempotent
    });
    await check('malformed-body', async () => {
      await raw.refused(
        {
          method: 'POST',
          path: KM_PATHS.wrap(s.keyId),
          body: JSON.stringify({ contactId: c, epoch: 0, reason: 'create', key: 'c2hvcnQ' }),
        },
        400,
        ['BAD_REQUEST'],
      );
    });
    await check('body-not-json', async () => {
      await raw.refused(
        { method: 'POST', path: KM_PATHS.unwrap(s.keyId), body: '{"contactId":' },
        400,
        ['BAD_REQUEST'],
      );
    });
  } finally {
    await wrapper.close();
    await generating.close();
    k0.fill(0);
    k1.fill(0);
  }
}
