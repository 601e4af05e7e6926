/**
 * Cross-check of the three backends (node:crypto, WebCrypto, noble): on random inputs they give
 * byte-identical AES-256-GCM ciphertexts and Ed25519 signatures, open and verify each other's
 * output, and refuse the same tampered input; on the strict-rejection cases (small-order keys and
 * R, torsion components, S >= L, non-canonical encodings) every backend says no, although
 * OpenSSL's own verification, without the pre-check in front of it, says yes to some of them.
 * SHA-256 and base64url on node agree with the portable code too, refusals included.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { ED25519_TORSION_SUBGROUP } from '@noble/curves/ed25519.js';
import { concatBytes, numberToBytesLE } from '@noble/curves/utils.js';
import '../src/_node.ts';
import { native } from '../src/_native.ts';
import { nodeEd25519Verify } from '../src/_sign-node.ts';
import { fromBase64Url, toBase64Url } from '../src/codec.ts';
import { sha256 } from '../src/mac.ts';
import { AuthenticationError, aesGcmDecrypt, aesGcmEncrypt, setAeadBackend } from '../src/aead.ts';
import {
  generateSigningKeyPair,
  setEd25519Backend,
  sign,
  signAsync,
  verify,
  verifyAsync,
} from '../src/sign.ts';
import {
  A_SCALAR,
  Fn,
  Fp,
  MESSAGES,
  Point,
  SMALL_ORDER,
  T8,
  UNIVERSAL,
  forge,
} from './_ed25519-forgeries.ts';
import { hex, toHex } from './_hex.ts';

const BACKENDS = ['node', 'webcrypto', 'noble'] as const;

afterEach(() => {
  setAeadBackend('auto');
  setEd25519Backend('auto');
});

/** `f` on each backend in turn, results in BACKENDS order. */
async function onEach<T>(
  select: (b: (typeof BACKENDS)[number]) => void,
  f: () => T | Promise<T>,
): Promise<T[]> {
  const out: T[] = [];
  for (const b of BACKENDS) {
    select(b);
    out.push(await f());
  }
  return out;
}

/** No caller's `.buffer` reaches other data (node's Buffers come from a shared pool). */
const ownsItsBuffer = (a: Uint8Array): boolean =>
  a.byteOffset === 0 && a.buffer.byteLength === a.length;

const flip = (bytes: Uint8Array, bit: number): Uint8Array => {
  const out = new Uint8Array(bytes);
  out[(bit >>> 3) % out.length]! ^= 1 << (bit & 7);
  return out;
};

describe('AES-256-GCM: node:crypto, WebCrypto and noble agree', () => {
  it('on random inputs: identical ciphertexts, each opens the others, all refuse a flipped bit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 5000 }),
        fc.option(fc.uint8Array({ maxLength: 300 }), { nil: undefined }),
        fc.nat(),
        async (key, nonce, pt, aad, bit) => {
          const sealed = await onEach(setAeadBackend, () => aesGcmEncrypt(key, nonce, pt, aad));
          expect(sealed.map(toHex)).toEqual(sealed.map(() => toHex(sealed[0]!)));
          for (const ct of sealed) {
            const opened = await onEach(setAeadBackend, () => aesGcmDecrypt(key, nonce, ct, aad));
            expect(opened.map(toHex)).toEqual(opened.map(() => toHex(pt)));
            for (const out of [...opened, ...sealed]) expect(ownsItsBuffer(out)).toBe(true);
          }
          const bad = flip(sealed[0]!, bit);
          const verdicts = await onEach(setAeadBackend, () =>
            aesGcmDecrypt(key, nonce, bad, aad).then(
              () => 'opened',
              (e: unknown) => (e instanceof AuthenticationError ? 'refused' : String(e)),
            ),
          );
          expect(verdicts).toEqual(['refused', 'refused', 'refused']);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('Ed25519: node:crypto, WebCrypto and noble agree', () => {
  it('on random keys and messages: identical signatures and verdicts, tampered or not', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), fc.nat(), async (msg, bit) => {
        const { secretKey, publicKey } = generateSigningKeyPair();
        const sigs = await onEach(setEd25519Backend, () => signAsync(secretKey, msg));
        const syncSigs = await onEach(setEd25519Backend, () => sign(secretKey, msg));
        expect([...sigs, ...syncSigs].map(toHex)).toEqual(Array(6).fill(toHex(sigs[0]!)));
        for (const [sig, expected] of [
          [sigs[0]!, true],
          [flip(sigs[0]!, bit), false],
        ] as const) {
          const verdicts = await onEach(setEd25519Backend, async () => [
            verify(publicKey, msg, sig),
            await verifyAsync(publicKey, msg, sig),
          ]);
          expect(verdicts).toEqual(Array(3).fill([expected, expected]));
        }
        const other = await onEach(setEd25519Backend, () =>
          verifyAsync(publicKey, flip(concatBytes(msg, new Uint8Array(1)), bit), sigs[0]!),
        );
        expect(other).toEqual([false, false, false]);
      }),
      { numRuns: 40 },
    );
  });

  /** Strict-rejection cases: [name, public key, message, signature]. */
  function strictCases(): [string, Uint8Array, Uint8Array, Uint8Array][] {
    const cases: [string, Uint8Array, Uint8Array, Uint8Array][] = [];
    const honest = generateSigningKeyPair();
    const A = Point.BASE.multiply(A_SCALAR).toBytes();
    for (const [i, m] of MESSAGES.slice(0, 6).entries()) {
      for (const e of SMALL_ORDER)
        cases.push([`small-order key ${toHex(e.bytes)}`, e.bytes, m, UNIVERSAL]);
      const R0 = hex(ED25519_TORSION_SUBGROUP[0]!);
      cases.push(['R = identity under an honest key', A, m, forge(A_SCALAR, A, R0, 0n, m)]);
      const r = BigInt(i + 1) * 0x7654321n;
      const torsionR = Point.BASE.multiply(r).add(T8).toBytes();
      cases.push(['R with a torsion component', A, m, forge(A_SCALAR, A, torsionR, r, m)]);
      const torsionA = Point.BASE.multiply(A_SCALAR).add(T8).toBytes();
      const R = Point.BASE.multiply(r).toBytes();
      cases.push(['key with a torsion component', torsionA, m, forge(A_SCALAR, torsionA, R, r, m)]);
      const good = sign(honest.secretKey, m);
      const s = Fn.fromBytes(good.subarray(32));
      const sPlusL = concatBytes(good.subarray(0, 32), numberToBytesLE(s + Fn.ORDER, 32));
      cases.push(['S + L (malleated)', honest.publicKey, m, sPlusL]);
      const nonCanonicalKey = numberToBytesLE(Fp.ORDER + 2n, 32);
      cases.push(['non-canonical key (y = p + 2)', nonCanonicalKey, m, good]);
    }
    return cases;
  }

  it('on the strict-rejection cases: every backend refuses, sync and async', async () => {
    for (const [name, pk, m, sig] of strictCases()) {
      const verdicts = await onEach(setEd25519Backend, async () => [
        verify(pk, m, sig),
        await verifyAsync(pk, m, sig),
      ]);
      expect(verdicts, name).toEqual(Array(3).fill([false, false]));
    }
  });

  it('needs the pre-check: OpenSSL alone accepts some of those cases', () => {
    const acceptedByOpenSsl = new Set(
      strictCases()
        .filter(([, pk, m, sig]) => nodeEd25519Verify(pk, m, sig))
        .map(([name]) => name.replace(/ [0-9a-f]{64}$/, '')),
    );
    expect([...acceptedByOpenSsl]).toContain('small-order key');
  });
});

/** `f` with the native slot's `key` emptied (the portable code), then restored. */
function portable<T>(key: 'base64' | 'sha256', f: () => T): T {
  const saved = native[key];
  delete native[key];
  try {
    return f();
  } finally {
    Object.assign(native, { [key]: saved });
  }
}

const outcome = (f: () => Uint8Array): string => {
  try {
    return toHex(f());
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
};

describe('SHA-256 and base64url: node and the portable code agree', () => {
  it('on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
        expect(toHex(sha256(bytes))).toBe(toHex(portable('sha256', () => sha256(bytes))));
        const text = toBase64Url(bytes);
        expect(text).toBe(portable('base64', () => toBase64Url(bytes)));
        const decoded = fromBase64Url(text);
        expect(toHex(decoded)).toBe(toHex(bytes));
        expect(ownsItsBuffer(decoded)).toBe(true);
        expect(ownsItsBuffer(sha256(bytes))).toBe(true);
      }),
    );
  });

  it('on altered texts: the same bytes, or the same refusal', () => {
    // Node's decoder reads the low byte of each UTF-16 unit: U+0141 reads as 'A', U+012D as '-'.
    const alphabet = 'AZaz09-_=+/ .\u00e9\u0141\u012d\uff41\ud800';
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 100 }),
        fc.nat(),
        fc.constantFrom(...alphabet),
        fc.constantFrom('replace', 'insert', 'delete'),
        (bytes, at, char, how) => {
          const text = toBase64Url(bytes);
          const i = text.length === 0 ? 0 : at % text.length;
          const cut = how === 'insert' ? i : i + 1;
          const altered = text.slice(0, i) + (how === 'delete' ? '' : char) + text.slice(cut);
          expect(outcome(() => fromBase64Url(altered))).toBe(
            portable('base64', () => outcome(() => fromBase64Url(altered))),
          );
        },
      ),
      { numRuns: 500 },
    );
    const long = toBase64Url(new Uint8Array(4096).fill(0xa7)); // a message-sized text
    for (const text of [
      ...['Zg==', 'Zh', 'Zm9', 'Z', 'Zg\n', ' Zg', 'Zg=', 'Z-_9', 'A'.repeat(5)],
      ...['Z\u0141', 'Zm9\u0130', 'QUJ\u012d', 'Zm9v+A', 'Zm9v/A', 'QQ==QUJD', 'Zm\u00009v'],
      ...[long, `${long.slice(1)}\u0141`, `${long.slice(0, -1)}=`, `${long.slice(0, 99)}+${long}`],
    ]) {
      expect(
        outcome(() => fromBase64Url(text)),
        text,
      ).toBe(portable('base64', () => outcome(() => fromBase64Url(text))));
    }
  });
});
