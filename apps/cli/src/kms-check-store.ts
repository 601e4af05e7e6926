/**
 * The key-store-model checks of `latchkey kms check` (kms-check.ts): the calls the key
 * service's store adapter makes (packages/keys/src/wrappers/http.ts), creation, rotation,
 * fetches of current and old epochs, and a shred that leaves the contact unknown for ever.
 */
import {
  KM_PATHS,
  KmStoreContact,
  openHttpKeyStoreManager,
  type HttpKeyStoreManager,
  type KmClientOptions,
} from '@latchkey/keys';
import { equalBytes, expect, type Check } from './_kms-check.ts';
import type { Raw } from './kms-check-raw.ts';

/** The key-store model: what the key service's store adapter asks. */
export async function storeChecks(
  client: KmClientOptions,
  raw: Raw,
  run: string,
  check: Check,
): Promise<void> {
  const km: HttpKeyStoreManager = openHttpKeyStoreManager(client);
  const c = `${run}-a`;
  let k0: Uint8Array | undefined;
  try {
    await check('health', async () => {
      const h = await km.health();
      expect(
        h.status === 'ok',
        `status ${h.status}${h.detail === undefined ? '' : `: ${h.detail}`}`,
      );
    });
    // A new contact starts with a fetch of its current key, which must be 404...
    await check('unknown-contact', async () => {
      await raw.refused(
        { method: 'GET', path: `${KM_PATHS.storeKey(c, 'current')}?reason=fetch` },
        404,
        ['NOT_FOUND'],
      );
    });
    // ... then the adapter creates it (reason create) and fetches again.
    await check('create', async () => {
      const k = await km.getContentKey(c);
      expect(k.epoch === 0 && k.currentEpoch === 0, `epoch ${k.epoch}/${k.currentEpoch}, want 0/0`);
      k0 = k.key;
    });
    await check('create-idempotent', async () => {
      const a = await raw.send({
        method: 'POST',
        path: KM_PATHS.storeContact(c),
        body: JSON.stringify({ reason: 'create' }),
      });
      const r = KmStoreContact.safeParse(a.json);
      expect(a.status === 200 && r.success, `want 200 {contactId, currentEpoch}, got ${a.status}`);
      expect(r.data.currentEpoch === 0, `currentEpoch ${r.data.currentEpoch}, want 0`);
      const k = await km.getContentKey(c, 0);
      expect(k0 !== undefined && equalBytes(k.key, k0), 'creating again changed the key');
    });
    await check('current-epoch', async () => {
      const e = await km.currentEpoch(c);
      expect(e === 0, `currentEpoch ${e}, want 0`);
    });
    await check('rotate', async () => {
      const e = await km.rotate(c);
      expect(e === 1, `currentEpoch ${e}, want 1`);
    });
    await check('fetch-current', async () => {
      const k = await km.getContentKey(c);
      expect(k.epoch === 1 && k.currentEpoch === 1, `epoch ${k.epoch}/${k.currentEpoch}, want 1/1`);
      expect(k0 === undefined || !equalBytes(k.key, k0), 'rotation kept the same key');
    });
    await check('fetch-old-epoch', async () => {
      const k = await km.getContentKey(c, 0);
      expect(k.epoch === 0 && k.currentEpoch === 1, `epoch ${k.epoch}/${k.currentEpoch}, want 0/1`);
      expect(k0 !== undefined && equalBytes(k.key, k0), 'epoch 0 answered another key');
    });
    await check('unknown-epoch', async () => {
      await raw.refused({ method: 'GET', path: `${KM_PATHS.storeKey(c, 99)}?reason=fetch` }, 404, [
        'NOT_FOUND',
      ]);
    });
    await check('malformed-body', async () => {
      await raw.refused(
        { method: 'POST', path: KM_PATHS.storeRotate(c), body: JSON.stringify({ reason: 'why' }) },
        400,
        ['BAD_REQUEST'],
      );
    });
    await check('body-not-json', async () => {
      await raw.refused(
        { method: 'POST', path: KM_PATHS.storeContact(c), body: '{"reason":' },
        400,
        ['BAD_REQUEST'],
      );
    });
    // A shred: DELETE ...?reason=destroy, then 404 for ever, creation included.
    await check('destroy', async () => {
      await km.destroy(c);
    });
    await check('destroyed-fetch', async () => {
      await raw.refused({ method: 'GET', path: `${KM_PATHS.storeKey(c, 0)}?reason=fetch` }, 404, [
        'NOT_FOUND',
      ]);
    });
    await check('destroyed-create', async () => {
      await raw.refused(
        {
          method: 'POST',
          path: KM_PATHS.storeContact(c),
          body: JSON.stringify({ reason: 'create' }),
        },
        404,
        ['NOT_FOUND'],
      );
    });
    await check('destroy-idempotent', async () => {
      await km.destroy(c);
    });
  } finally {
    await km.close();
    k0?.fill(0);
  }
}
