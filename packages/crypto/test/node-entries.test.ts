/**
 * The `node` export condition (package.json): under Node the package's entries load the
 * node:crypto backends and envelopes go through them; the default entries never reach node:crypto
 * (what a browser bundle gets); both kinds of entry export exactly the same names.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { native } from '../src/_native.ts';
import { aeadBackend, setAeadBackend } from '../src/aead.ts';
import { ed25519Backend, generateSigningKeyPair, setEd25519Backend } from '../src/sign.ts';

interface Manifest {
  exports: Record<string, Record<string, string>>;
  publishConfig: { exports: Record<string, Record<string, string>> };
  sideEffects: string[];
}
const manifest = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
) as Manifest;
const SRC = new URL('../src/', import.meta.url);

afterEach(() => {
  setAeadBackend('auto');
  setEd25519Backend('auto');
  vi.restoreAllMocks();
});

describe('the default entries', () => {
  it('leave node:crypto out: WebCrypto under auto, node not selectable', () => {
    // Nothing in this file has loaded a `node` entry yet (vitest isolates test files).
    expect(native).toEqual({});
    expect(aeadBackend()).toBe('webcrypto');
    expect(ed25519Backend()).toBe('webcrypto');
    expect(() => setAeadBackend('node')).toThrow(TypeError);
    expect(() => setEd25519Backend('node')).toThrow(TypeError);
  });

  it('never import node:crypto or the node backends, except through src/node/', () => {
    const nodeOnly = /^_(node|[a-z0-9-]+-node)\.ts$/;
    for (const file of readdirSync(SRC).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(new URL(file, SRC), 'utf8');
      if (nodeOnly.test(file)) continue;
      expect(text, file).not.toMatch(/from 'node:|import 'node:|-node\.ts'|_node\.ts'/);
    }
  });
});

describe('the node entries', () => {
  const subpaths = Object.entries(manifest.exports).filter(([, c]) => c['node'] !== undefined);

  it('exist for every subpath whose module reaches the native slot', () => {
    expect(subpaths.map(([p]) => p).sort()).toEqual(
      [
        '.',
        './aead',
        './codec',
        './dh',
        './envelope',
        './chunked',
        './hash',
        './hpke',
        './mac',
        './random',
        './sign',
        './signal',
        './transcript',
        './wrap',
      ].sort(),
    );
  });

  it.each(subpaths)(
    '%s: the same names as the default entry, in source and published',
    async (path, c) => {
      const [node, fallback] = [c['node']!, c['default']!];
      expect(Object.keys(c)[0], 'node comes first').toBe('node');
      const names = async (file: string): Promise<string[]> =>
        Object.keys((await import(new URL(`../${file}`, import.meta.url).href)) as object).sort();
      expect(await names(node)).toEqual(await names(fallback));
      const published = manifest.publishConfig.exports[path]!;
      const dist = (src: string): string =>
        src.replace('./src/', './dist/').replace(/\.ts$/, '.js');
      expect(published).toEqual({
        types: dist(fallback).replace(/\.js$/, '.d.ts'),
        node: dist(node),
        default: dist(fallback),
      });
    },
  );

  it('are listed as side effects, so that bundlers keep the import of _node.ts', () => {
    expect(manifest.sideEffects).toEqual(
      expect.arrayContaining([
        './src/_node.ts',
        './src/node/*.ts',
        './dist/_node.js',
        './dist/node/*.js',
      ]),
    );
  });

  it('make @latchkey/crypto/hpke key delivery run its X25519 on node:crypto', async () => {
    const { generateRecipientKeyPair, openFromSender, sealToRecipient } =
      await import('@latchkey/crypto/hpke');
    const calls = {
      publicKey: vi.spyOn(native.x25519!, 'publicKey'),
      sharedSecret: vi.spyOn(native.x25519!, 'sharedSecret'),
    };
    const recipient = generateRecipientKeyPair('x25519');
    const info = new TextEncoder().encode('contact c1, epoch 0');
    const plaintext = new Uint8Array(32).fill(7);
    const sealed = sealToRecipient({
      suite: 'x25519',
      recipientPublicKey: recipient.publicKey,
      info,
      plaintext,
    });
    const opened = openFromSender({
      suite: 'x25519',
      recipientSecretKey: recipient.secretKey,
      info,
      ...sealed,
    });
    expect(opened).toEqual(plaintext);
    // Sealing: the ephemeral key pair and one DH; opening: one DH and the recipient's public key.
    expect(calls.sharedSecret).toHaveBeenCalledTimes(2);
    expect(calls.publicKey.mock.calls.length).toBeGreaterThanOrEqual(2);
  });

  it('make @latchkey/crypto/envelope seal and open through node:crypto', async () => {
    const { openEnvelope, sealEnvelope } = await import('@latchkey/crypto/envelope');
    expect(aeadBackend()).toBe('node');
    expect(ed25519Backend()).toBe('node');
    const calls = {
      encrypt: vi.spyOn(native.aead!, 'encrypt'),
      decrypt: vi.spyOn(native.aead!, 'decrypt'),
      sign: vi.spyOn(native.ed25519!, 'sign'),
      verify: vi.spyOn(native.ed25519!, 'verify'),
    };
    const signer = generateSigningKeyPair();
    const key = new Uint8Array(32).fill(9);
    const header = {
      v: 2,
      alg: 'latchkey.v1.aes256gcm',
      contactId: 'c',
      epoch: 0,
      senderId: 's',
      msgId: 'm',
      sentAt: 1,
      ctr: 1,
      prev: new Uint8Array(32),
      seenSeq: 0,
      seenHash: new Uint8Array(32),
    } as const;
    const plaintext = new TextEncoder().encode('hello');
    const sealed = await sealEnvelope({ key, header, plaintext, signingKey: signer.secretKey });
    const opened = await openEnvelope({ key, header, ...sealed, verifyKey: signer.publicKey });
    expect(opened).toEqual(plaintext);
    for (const [name, spy] of Object.entries(calls)) expect(spy, name).toHaveBeenCalledTimes(1);
  });
});
