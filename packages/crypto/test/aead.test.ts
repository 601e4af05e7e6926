import { afterEach, describe, expect, it } from 'vitest';
import '../src/_node.ts';
import {
  AuthenticationError,
  aeadBackend,
  aesGcmDecrypt,
  aesGcmEncrypt,
  setAeadBackend,
} from '../src/aead.ts';

const key = new Uint8Array(32).fill(7);
const nonce = new Uint8Array(12).fill(1);
const BACKENDS = ['node', 'webcrypto', 'noble'] as const;

afterEach(() => setAeadBackend('auto'));

describe('backend selection', () => {
  it('uses node:crypto automatically once loaded; any backend can be forced', () => {
    expect(aeadBackend()).toBe('node');
    setAeadBackend('noble');
    expect(aeadBackend()).toBe('noble');
    setAeadBackend('webcrypto');
    expect(aeadBackend()).toBe('webcrypto');
    setAeadBackend('auto');
    expect(aeadBackend()).toBe('node');
    expect(() => setAeadBackend('aes' as 'noble')).toThrow(RangeError);
  });
});

describe.each(BACKENDS)('AES-256-GCM on %s', (backend) => {
  it('round-trips with and without AAD; absent AAD equals empty AAD', async () => {
    setAeadBackend(backend);
    const pt = new TextEncoder().encode('hello');
    const ct = await aesGcmEncrypt(key, nonce, pt);
    expect(ct).toHaveLength(pt.length + 16);
    expect(await aesGcmDecrypt(key, nonce, ct)).toEqual(pt);
    expect(await aesGcmDecrypt(key, nonce, ct, new Uint8Array(0))).toEqual(pt);
    const aad = new Uint8Array([1, 2, 3]);
    const ct2 = await aesGcmEncrypt(key, nonce, pt, aad);
    expect(await aesGcmDecrypt(key, nonce, ct2, aad)).toEqual(pt);
    await expect(aesGcmDecrypt(key, nonce, ct2)).rejects.toThrow(AuthenticationError);
  });

  it('throws a bare AuthenticationError on a bad tag, a wrong key or short input', async () => {
    setAeadBackend(backend);
    const ct = await aesGcmEncrypt(key, nonce, new Uint8Array(10));
    const bad = ct.slice();
    bad[bad.length - 1]! ^= 0x80;
    const err = await aesGcmDecrypt(key, nonce, bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as Error).message).toBe('authentication failed');
    expect((err as Error).name).toBe('AuthenticationError');
    await expect(aesGcmDecrypt(new Uint8Array(32), nonce, ct)).rejects.toThrow(AuthenticationError);
    await expect(aesGcmDecrypt(key, nonce, ct.subarray(0, 15))).rejects.toThrow(
      AuthenticationError,
    );
  });

  it('treats misuse as TypeError/RangeError', async () => {
    setAeadBackend(backend);
    const pt = new Uint8Array(1);
    await expect(aesGcmEncrypt(new Uint8Array(16), nonce, pt)).rejects.toThrow(RangeError);
    await expect(aesGcmEncrypt(key, new Uint8Array(16), pt)).rejects.toThrow(RangeError);
    await expect(aesGcmDecrypt(key, new Uint8Array(8), pt)).rejects.toThrow(RangeError);
    await expect(aesGcmEncrypt(key, nonce, 'x' as unknown as Uint8Array)).rejects.toThrow(
      TypeError,
    );
    await expect(aesGcmEncrypt(key, nonce, pt, [] as unknown as Uint8Array)).rejects.toThrow(
      TypeError,
    );
  });

  it('notices a key array mutated after its CryptoKey was cached', async () => {
    setAeadBackend(backend);
    const k = new Uint8Array(32).fill(3);
    const pt = new Uint8Array([42]);
    const before = await aesGcmEncrypt(k, nonce, pt);
    k[0] = 4;
    const after = await aesGcmEncrypt(k, nonce, pt);
    expect(after).not.toEqual(before);
    setAeadBackend('noble');
    expect(await aesGcmEncrypt(k, nonce, pt)).toEqual(after);
  });

  it('accepts subarray views at any offset', async () => {
    setAeadBackend(backend);
    const buf = new Uint8Array(100).map((_, i) => i);
    const k = buf.subarray(3, 35);
    const n = buf.subarray(40, 52);
    const pt = buf.subarray(60, 71);
    const ct = await aesGcmEncrypt(k, n, pt, buf.subarray(1, 2));
    expect(await aesGcmDecrypt(k, n, ct, buf.subarray(1, 2))).toEqual(pt.slice());
  });
});
