/**
 * The PKCS#11 adapter against a real SoftHSM2 token, created for this run in a temp directory
 * (SOFTHSM2_CONF points at a config of our own; nothing global is touched). Without SoftHSM2
 * the tests are skipped with a printed reason, except under CI=true where they fail.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { keyManagerContract } from '../contract.ts';
import { codeOf, dbFiles, tempDir } from '../_helpers.ts';
import { completeShreds } from '../../src/shred-completion.ts';
import {
  createPkcs11Generations,
  createPkcs11Wrapper,
  openPkcs11KeyManager,
} from '../../src/wrappers/pkcs11.ts';

const LIBRARY = process.env.LATCHKEY_PKCS11_LIBRARY ?? '/usr/lib/softhsm/libsofthsm2.so';
const TOKEN = 'latchkey-test';
const PIN = '5678';

function softhsmMissing(): string | undefined {
  if (!existsSync(LIBRARY)) return `${LIBRARY} not found (Debian package softhsm2)`;
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'pipe' });
  } catch {
    return 'softhsm2-util not found (Debian package softhsm2)';
  }
  return undefined;
}

const missing = softhsmMissing();
const token = tempDir('latchkey-softhsm-');
let ready = false;

/** Creates the token once for this file, in its own directory. */
function ensureToken(): void {
  if (ready) return;
  const conf = join(token.dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${token.dir}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  // Read by the module at C_Initialize, which happens after this.
  process.env.SOFTHSM2_CONF = conf;
  execFileSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', TOKEN, '--so-pin', '1234', '--pin', PIN],
    {
      stdio: 'pipe',
      env: { ...process.env, SOFTHSM2_CONF: conf },
    },
  );
  ready = true;
}

afterAll(() => token.cleanup());

let labels = 0;
const nextLabel = (): string => `kek-${process.pid}-${++labels}`;

if (missing !== undefined) {
  if (process.env.CI === 'true') {
    it('needs SoftHSM2 under CI', () => {
      throw new Error(`SoftHSM2 is required under CI: ${missing}`);
    });
  } else {
    console.warn(`skipping PKCS#11 tests: ${missing}`);
    it.skip(`PKCS#11 adapter (${missing})`, () => undefined);
  }
} else {
  keyManagerContract('pkcs11 (SoftHSM2)', async () => {
    ensureToken();
    const { dir, cleanup } = tempDir();
    const path = join(dir, 'keys', 'keys.db');
    const keyLabel = nextLabel();
    return {
      backend: 'pkcs11',
      open: () =>
        openPkcs11KeyManager({
          library: LIBRARY,
          tokenLabel: TOKEN,
          pin: PIN,
          keyLabel,
          createKey: true,
          path,
        }),
      files: () => dbFiles(path),
      teardown: async () => cleanup(),
    };
  });

  describe('PKCS#11 adapter (SoftHSM2)', () => {
    const base = () => ({ library: LIBRARY, tokenLabel: TOKEN, pin: PIN });

    it('generates the KEK in the token as sensitive and never extractable', async () => {
      ensureToken();
      const w = createPkcs11Wrapper({ ...base(), keyLabel: nextLabel(), createKey: true });
      expect(w.keyAttributes()).toEqual({
        sensitive: true,
        extractable: false,
        alwaysSensitive: true,
        neverExtractable: true,
        valueLength: 32,
        valueReadable: false,
      });
      const ck = new Uint8Array(32).fill(5);
      const wrapped = await w.wrap(ck, { contactId: 'c1', epoch: 3, reason: 'create' });
      expect(wrapped).toHaveLength(61);
      expect(await w.unwrap(wrapped, { contactId: 'c1', epoch: 3, reason: 'fetch' })).toEqual(ck);
      // Bound to contact and epoch; a flipped bit fails too.
      await expect(
        w.unwrap(wrapped, { contactId: 'c2', epoch: 3, reason: 'fetch' }),
      ).rejects.toThrow(AuthenticationError);
      await expect(
        w.unwrap(wrapped, { contactId: 'c1', epoch: 4, reason: 'fetch' }),
      ).rejects.toThrow(AuthenticationError);
      const bad = Uint8Array.from(wrapped);
      bad[20] = (bad[20] ?? 0) ^ 1;
      await expect(w.unwrap(bad, { contactId: 'c1', epoch: 3, reason: 'fetch' })).rejects.toThrow(
        AuthenticationError,
      );
      await w.close();
      await w.close();
      expect(await codeOf(w.wrap(ck, { contactId: 'c1', epoch: 0, reason: 'create' }))).toBe(
        'KEY_UNAVAILABLE',
      );
    });

    it('refuses a missing key, a wrong PIN, an unknown token, and a store of another HSM key', async () => {
      ensureToken();
      expect(await codeOf(() => createPkcs11Wrapper({ ...base(), keyLabel: 'absent' }))).toBe(
        'KEY_UNAVAILABLE',
      );
      expect(
        await codeOf(() =>
          createPkcs11Wrapper({ ...base(), tokenLabel: 'nope', keyLabel: 'x', createKey: true }),
        ),
      ).toBe('KEY_UNAVAILABLE');
      const { dir, cleanup } = tempDir();
      try {
        const path = join(dir, 'keys.db');
        const label = nextLabel();
        const km = await openPkcs11KeyManager({
          ...base(),
          keyLabel: label,
          createKey: true,
          path,
        });
        await km.getContentKey('c1');
        await km.close();
        const other = await openPkcs11KeyManager({
          ...base(),
          keyLabel: nextLabel(),
          createKey: true,
          path,
        }).catch((e: unknown) => e);
        expect(other).toMatchObject({
          code: 'KEY_UNAVAILABLE',
          message: 'the HSM key does not match this key database',
        });
        // Wrong PIN (with no session of this process open: PKCS#11 login is per application,
        // so while one is logged in, C_Login answers CKR_USER_ALREADY_LOGGED_IN).
        expect(
          await codeOf(() => createPkcs11Wrapper({ ...base(), pin: '0000', keyLabel: label })),
        ).toBe('KEY_UNAVAILABLE');
        // A wrapped key moved to another contact fails to open.
        const km2 = await openPkcs11KeyManager({ ...base(), keyLabel: label, path });
        await km2.getContentKey('c2');
        const raw = new Database(path);
        raw.exec(
          "UPDATE content_keys SET wrapped = (SELECT wrapped FROM content_keys WHERE contact_id = 'c1') WHERE contact_id = 'c2'",
        );
        raw.close();
        expect(await codeOf(km2.getContentKey('c2'))).toBe('KEY_UNAVAILABLE');
        expect(await codeOf(km2.getContentKey('c1'))).toBe('OK');
        await km2.close();
      } finally {
        cleanup();
      }
    });

    it('rewraps every key under a new HSM key; the old key no longer opens them', async () => {
      ensureToken();
      const { dir, cleanup } = tempDir();
      try {
        const path = join(dir, 'keys.db');
        const oldLabel = nextLabel();
        const newLabel = nextLabel();
        const km = await openPkcs11KeyManager({
          ...base(),
          keyLabel: oldLabel,
          createKey: true,
          path,
        });
        const keys = new Map<string, Uint8Array>();
        for (let i = 0; i < 5; i++) {
          keys.set(`c${i}/0`, (await km.getContentKey(`c${i}`)).key);
          await km.rotate(`c${i}`);
          keys.set(`c${i}/1`, (await km.getContentKey(`c${i}`, 1)).key);
        }
        expect(
          await km.rewrap(createPkcs11Wrapper({ ...base(), keyLabel: newLabel, createKey: true })),
        ).toEqual({ rewrapped: 10 });
        for (const [id, k] of keys) {
          const [c, e] = id.split('/');
          expect((await km.getContentKey(c ?? '', Number(e))).key).toEqual(k);
        }
        await km.close();
        const old = createPkcs11Wrapper({ ...base(), keyLabel: oldLabel });
        const raw = new Database(path, { readonly: true });
        const rows = raw
          .prepare<[], { contact_id: string; epoch: number; wrapped: Uint8Array }>(
            'SELECT contact_id, epoch, wrapped FROM content_keys',
          )
          .all();
        raw.close();
        expect(rows).toHaveLength(10);
        for (const r of rows) {
          await expect(
            old.unwrap(r.wrapped, { contactId: r.contact_id, epoch: r.epoch, reason: 'fetch' }),
          ).rejects.toThrow(AuthenticationError);
        }
        await old.close();
        expect(await codeOf(openPkcs11KeyManager({ ...base(), keyLabel: oldLabel, path }))).toBe(
          'KEY_UNAVAILABLE',
        );
        const again = await openPkcs11KeyManager({ ...base(), keyLabel: newLabel, path });
        expect((await again.getContentKey('c3', 1)).key).toEqual(keys.get('c3/1'));
        await again.close();
      } finally {
        cleanup();
      }
    });

    it('completing a shred makes a new key object, re-wraps under it and destroys the old one', async () => {
      ensureToken();
      const { dir, cleanup } = tempDir();
      try {
        const path = join(dir, 'keys', 'keys.db');
        const label = nextLabel();
        const opts = { ...base(), keyLabel: label, createKey: true };
        const km = await openPkcs11KeyManager({ ...opts, path });
        const kept = (await km.getContentKey('kept')).key;
        await km.getContentKey('doomed');
        const raw = new Database(path);
        raw.pragma('wal_checkpoint(TRUNCATE)');
        raw.close();
        const copy = join(dir, 'before.db');
        copyFileSync(path, copy);
        await km.destroy('doomed');
        expect(await completeShreds(km, createPkcs11Generations(opts))).toEqual({
          retired: [1],
          rewrapped: 1,
          generation: 2,
        });
        expect((await km.getContentKey('kept')).key).toEqual(kept);
        await km.close();
        // The old object is gone from the token; the new one is there, sensitive, never extractable.
        expect(await codeOf(async () => createPkcs11Wrapper({ ...base(), keyLabel: label }))).toBe(
          'KEY_UNAVAILABLE',
        );
        const next = createPkcs11Wrapper({ ...base(), keyLabel: `${label}.g2` });
        expect(next.keyAttributes()).toMatchObject({
          sensitive: true,
          extractable: false,
          valueReadable: false,
        });
        // The copy taken before the shred opens with nothing left in the token.
        const old = new Database(copy, { readonly: true });
        const rows = old
          .prepare<[], { contact_id: string; epoch: number; wrapped: Uint8Array }>(
            'SELECT contact_id, epoch, wrapped FROM content_keys',
          )
          .all();
        old.close();
        expect(rows).toHaveLength(2);
        for (const r of rows) {
          await expect(
            next.unwrap(r.wrapped, { contactId: r.contact_id, epoch: r.epoch, reason: 'fetch' }),
          ).rejects.toThrow(AuthenticationError);
        }
        await next.close();
        // Reopened with the configured label: the store's generation 2 is found.
        const again = await openPkcs11KeyManager({ ...base(), keyLabel: label, path });
        expect((await again.getContentKey('kept')).key).toEqual(kept);
        await again.close();
      } finally {
        cleanup();
      }
    });
  });
}
