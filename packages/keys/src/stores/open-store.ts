/**
 * Opening the wrapped key store (key-store.ts) over a database's tables: the store's current KEK
 * generation, and the key-check value that makes a wrong KEK fail at open.
 */
import { AuthenticationError } from '@latchkey/crypto/aead';
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';
import type { KeyWrapper, WrapReason } from '../key-wrapper.ts';
import { WrappedKeyStore } from './key-store.ts';
import { CHECK_CTX, unavailable, type KeyTable } from './key-table.ts';
import {
  isGenerations,
  type KeyStoreOptions,
  type WrappedKeyManager,
} from './wrapped-key-manager.ts';

/**
 * The key manager over an opened `table`: takes the store's current KEK generation and, with a
 * local wrapper (`checkAtOpen`), checks that the KEK is the one the store was created with. On
 * failure the table and the wrapper are closed.
 * @throws LatchkeyError KEY_UNAVAILABLE when the KEK does not match or cannot be reached.
 */
export async function openKeyStore(
  table: KeyTable,
  opts: KeyStoreOptions & { where: string },
): Promise<WrappedKeyManager> {
  let wrapper: KeyWrapper | undefined = isGenerations(opts.wrapper) ? undefined : opts.wrapper;
  try {
    if (isGenerations(opts.wrapper)) {
      const current = (await table.generations()).find((g) => g.state === 'current');
      wrapper = await opts.wrapper.wrapper(current?.generation ?? 1, { create: false });
    }
    if (wrapper === undefined) throw new LatchkeyError('KEY_UNAVAILABLE', 'no key-encryption key');
    if (wrapper.checkAtOpen) {
      await checkKek(
        table,
        wrapper,
        opts.mismatchMessage ?? 'the key-encryption key does not match this key database',
        opts.where,
      );
    }
  } catch (err) {
    await table.close().catch(() => undefined);
    await wrapper?.close();
    throw unavailable('cannot open key database', err);
  }
  return new WrappedKeyStore(table, wrapper, opts.now ?? Date.now);
}

/** Verifies (creating on first use) the key-check value of `wrapper`. */
async function checkKek(
  table: KeyTable,
  wrapper: KeyWrapper,
  mismatch: string,
  where: string,
): Promise<void> {
  const ctx = { ...CHECK_CTX, reason: 'create' as WrapReason };
  const probe = randomBytes(32);
  const fresh = await wrapper.wrap(probe, ctx).finally(() => probe.fill(0));
  const value = await table.keyCheck(fresh);
  try {
    (await wrapper.unwrap(value, { ...ctx, reason: 'fetch' })).fill(0);
  } catch (err) {
    if (err instanceof AuthenticationError)
      throw new LatchkeyError('KEY_UNAVAILABLE', mismatch, { detail: where });
    throw err;
  }
}
