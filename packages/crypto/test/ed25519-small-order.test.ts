/**
 * Ed25519 keys and signatures that permissive verifiers accept and strict ones must not, checked
 * on every verifier (sync, with context, async on the WebCrypto and noble backends) and by
 * `isValidSigningPublicKey`.
 *
 * - Small-order public keys (the 8 points of the 8-torsion subgroup, in every encoding, canonical
 *   or not) with the signature R = identity, S = 0: the cofactored equation
 *   [8][S]B = [8]R + [8][k]A holds for every message, so it is a universal forgery.
 * - Small-order R under an honest key, and a torsion component in A or R: valid under the
 *   cofactored equation (noble) but not, or only sometimes, under the cofactorless one (OpenSSL
 *   behind WebCrypto), so the two backends disagreed.
 *
 * The attack signatures are built here with @noble/curves' point and scalar-field API; they are
 * test inputs, not signing code.
 */
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, concatBytes, numberToBytesLE } from '@noble/curves/utils.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  generateSigningKeyPair,
  isValidSigningPublicKey,
  setEd25519Backend,
  sign,
  verify,
  verifyAsync,
  verifyWithContext,
  verifyWithContextAsync,
} from '../src/sign.ts';
import { hex, toHex } from './_hex.ts';

const Point = ed25519.Point;
const { Fn, Fp } = Point;
const CONTEXT = 'latchkey.v1.msgsig';
const MESSAGES = [
  new Uint8Array(0),
  new TextEncoder().encode('please refund order 1042'),
  new TextEncoder().encode('do not refund'),
  ...Array.from({ length: 13 }, (_, i) => new Uint8Array(i * 7 + 1).fill(i)),
];

const withSignBit = (bytes: Uint8Array): Uint8Array => {
  const out = new Uint8Array(bytes);
  out[31]! |= 0x80;
  return out;
};

interface Encoding {
  readonly bytes: Uint8Array;
  readonly canonical: boolean;
}

/**
 * Every 32-byte string that a lenient (ZIP-215) decoder reads as an 8-torsion point: the 8
 * canonical encodings, x = 0 with the sign bit set, and y + p wherever it fits in 255 bits.
 */
function smallOrderEncodings(): Encoding[] {
  const found = new Map<string, Encoding>();
  const add = (bytes: Uint8Array, canonical: boolean): void => {
    found.set(toHex(bytes), { bytes, canonical });
  };
  for (const h of ED25519_TORSION_SUBGROUP) {
    const bytes = hex(h);
    add(bytes, true);
    const { x, y } = Point.fromBytes(bytes).toAffine();
    if (x === 0n) add(withSignBit(bytes), false);
    if (y + Fp.ORDER < 2n ** 255n) {
      const alias = numberToBytesLE(y + Fp.ORDER, 32);
      add(alias, false);
      add(withSignBit(alias), false);
    }
  }
  return [...found.values()];
}

const SMALL_ORDER = smallOrderEncodings();
const label = (e: Encoding): string => `${toHex(e.bytes)}${e.canonical ? '' : ' (non-canonical)'}`;

/** R = identity, S = 0. */
const UNIVERSAL = concatBytes(hex(ED25519_TORSION_SUBGROUP[0]!), new Uint8Array(32));

/** The message an Ed25519 signature covers under Latchkey's context framing. */
const framed = (context: string, message: Uint8Array): Uint8Array => {
  const ctx = new TextEncoder().encode(context);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, ctx.length);
  return concatBytes(len, ctx, message);
};

/** S = r + H(R || A || M) * a mod L for a chosen point R and scalars r, a. */
function forge(
  a: bigint,
  publicKey: Uint8Array,
  R: Uint8Array,
  r: bigint,
  message: Uint8Array,
): Uint8Array {
  const k = Fn.create(bytesToNumberLE(sha512(concatBytes(R, publicKey, message))));
  return concatBytes(R, Fn.toBytes(Fn.add(r, Fn.mul(k, a))));
}

const T8 = Point.fromHex(ED25519_TORSION_SUBGROUP[1]!); // a point of order 8
const A_SCALAR = Fn.create(bytesToNumberLE(sha512(new TextEncoder().encode('latchkey test key'))));

type Verifier = (
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
) => boolean | Promise<boolean>;
type Case = readonly [name: string, check: Verifier, signed: (m: Uint8Array) => Uint8Array];

const raw = (m: Uint8Array): Uint8Array => m;
const inContext = (m: Uint8Array): Uint8Array => framed(CONTEXT, m);
const SYNC: Case[] = [
  ['verify', verify, raw],
  ['verifyWithContext', (pk, m, sig) => verifyWithContext(pk, CONTEXT, m, sig), inContext],
];
const ASYNC: Case[] = [
  ['verifyAsync', verifyAsync, raw],
  [
    'verifyWithContextAsync',
    (pk, m, sig) => verifyWithContextAsync(pk, CONTEXT, m, sig),
    inContext,
  ],
];

/** RFC 8032 §5.1.3 decoding (y < p, on the curve, no x = 0 with the sign bit set). */
function decodesStrictly(bytes: Uint8Array): boolean {
  try {
    Point.fromBytes(bytes, false);
    return true;
  } catch {
    return false;
  }
}

afterEach(() => setEd25519Backend('auto'));

describe('the small-order encodings under test', () => {
  it('are the 8 distinct 8-torsion points in 14 encodings', () => {
    expect(SMALL_ORDER).toHaveLength(14);
    expect(SMALL_ORDER.filter((e) => e.canonical)).toHaveLength(8);
    const points = new Set<string>();
    for (const e of SMALL_ORDER) {
      const p = Point.fromBytes(e.bytes, true);
      expect(p.isSmallOrder(), label(e)).toBe(true);
      points.add(p.toHex());
      expect(decodesStrictly(e.bytes), label(e)).toBe(e.canonical);
    }
    expect(points.size).toBe(8);
  });

  it('R = identity, S = 0 verifies for every message under a permissive verifier', () => {
    for (const e of SMALL_ORDER) {
      for (const m of MESSAGES) {
        expect(ed25519.verify(UNIVERSAL, m, e.bytes, { zip215: true }), label(e)).toBe(true);
      }
    }
  });
});

describe('isValidSigningPublicKey', () => {
  it('accepts generated keys', () => {
    for (let i = 0; i < 20; i++) {
      expect(isValidSigningPublicKey(generateSigningKeyPair().publicKey)).toBe(true);
    }
  });

  it.each(SMALL_ORDER.map((e) => [label(e), e.bytes] as const))(
    'refuses small-order %s',
    (_, bytes) => {
      expect(isValidSigningPublicKey(bytes)).toBe(false);
    },
  );

  it('refuses a key with a torsion component (a point of order 8L)', () => {
    expect(isValidSigningPublicKey(Point.BASE.multiply(A_SCALAR).add(T8).toBytes())).toBe(false);
  });

  it('refuses encodings that are not canonical or not on the curve, and non-keys', () => {
    const honest = generateSigningKeyPair().publicKey;
    expect(isValidSigningPublicKey(new Uint8Array(32).fill(0xff))).toBe(false); // y >= p
    expect(isValidSigningPublicKey(numberToBytesLE(Fp.ORDER + 2n, 32))).toBe(false); // y = p + 2
    let offCurve = 2n;
    while (decodesStrictly(numberToBytesLE(offCurve, 32))) offCurve++;
    expect(isValidSigningPublicKey(numberToBytesLE(offCurve, 32))).toBe(false);
    expect(isValidSigningPublicKey(honest.subarray(1))).toBe(false);
    expect(isValidSigningPublicKey(concatBytes(honest, new Uint8Array(1)))).toBe(false);
    expect(isValidSigningPublicKey('key' as unknown as Uint8Array)).toBe(false);
    expect(isValidSigningPublicKey(undefined as unknown as Uint8Array)).toBe(false);
  });
});

describe.each([
  ['sync (noble)', 'auto', SYNC],
  ['async on webcrypto', 'webcrypto', ASYNC],
  ['async on noble', 'noble', ASYNC],
] as const)('Ed25519 verifiers, %s', (_, backend, cases) => {
  for (const [name, check, signed] of cases) {
    it(`${name} refuses R = identity, S = 0 under every small-order key`, async () => {
      setEd25519Backend(backend);
      const accepted: string[] = [];
      for (const e of SMALL_ORDER) {
        for (const m of MESSAGES) {
          expect(ed25519.verify(UNIVERSAL, signed(m), e.bytes, { zip215: true })).toBe(true);
          if (await check(e.bytes, m, UNIVERSAL)) accepted.push(label(e));
        }
      }
      expect([...new Set(accepted)]).toEqual([]);
    });

    it(`${name} refuses every small-order R with S = 0 under every small-order key`, async () => {
      setEd25519Backend(backend);
      const accepted: string[] = [];
      for (const e of SMALL_ORDER) {
        for (const r of ED25519_TORSION_SUBGROUP) {
          const sig = concatBytes(hex(r), new Uint8Array(32));
          for (const m of MESSAGES.slice(0, 4)) {
            if (await check(e.bytes, m, sig)) accepted.push(`${label(e)} R=${r}`);
          }
        }
      }
      expect(accepted).toEqual([]);
    });

    it(`${name} refuses R = identity, S = k·a under an honest key`, async () => {
      setEd25519Backend(backend);
      const A = Point.BASE.multiply(A_SCALAR).toBytes();
      const R = hex(ED25519_TORSION_SUBGROUP[0]!);
      for (const m of MESSAGES) {
        const sig = forge(A_SCALAR, A, R, 0n, signed(m));
        expect(ed25519.verify(sig, signed(m), A, { zip215: true })).toBe(true);
        expect(await check(A, m, sig)).toBe(false);
      }
    });

    it(`${name} refuses a key with a torsion component`, async () => {
      setEd25519Backend(backend);
      const A = Point.BASE.multiply(A_SCALAR).add(T8).toBytes();
      for (const [i, m] of MESSAGES.entries()) {
        const r = BigInt(i + 1) * 0x1234567n;
        const sig = forge(A_SCALAR, A, Point.BASE.multiply(r).toBytes(), r, signed(m));
        expect(ed25519.verify(sig, signed(m), A, { zip215: true })).toBe(true);
        expect(await check(A, m, sig)).toBe(false);
      }
    });

    it(`${name} refuses an R with a torsion component`, async () => {
      setEd25519Backend(backend);
      const A = Point.BASE.multiply(A_SCALAR).toBytes();
      for (const [i, m] of MESSAGES.entries()) {
        const r = BigInt(i + 1) * 0x7654321n;
        const sig = forge(A_SCALAR, A, Point.BASE.multiply(r).add(T8).toBytes(), r, signed(m));
        expect(ed25519.verify(sig, signed(m), A)).toBe(true); // noble's strict, cofactored check
        expect(await check(A, m, sig)).toBe(false);
      }
    });

    it(`${name} accepts honest signatures and well-formed crafted ones (the controls)`, async () => {
      setEd25519Backend(backend);
      const A = Point.BASE.multiply(A_SCALAR).toBytes();
      const honest = generateSigningKeyPair();
      for (const [i, m] of MESSAGES.entries()) {
        const r = BigInt(i + 1) * 0x7654321n;
        expect(
          await check(A, m, forge(A_SCALAR, A, Point.BASE.multiply(r).toBytes(), r, signed(m))),
        ).toBe(true);
        expect(await check(honest.publicKey, m, sign(honest.secretKey, signed(m)))).toBe(true);
      }
    });
  }
});
