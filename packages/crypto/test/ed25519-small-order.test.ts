/**
 * Ed25519 keys and signatures that permissive verifiers accept and strict ones must not, checked
 * on every verifier (sync and with context on the node and noble backends, async on the node,
 * WebCrypto and noble backends) and by `isValidSigningPublicKey`.
 *
 * - Small-order public keys (the 8 points of the 8-torsion subgroup, in every encoding, canonical
 *   or not) with the signature R = identity, S = 0: the cofactored equation
 *   [8][S]B = [8]R + [8][k]A holds for every message, so it is a universal forgery.
 * - Small-order R under an honest key, and a torsion component in A or R: valid under the
 *   cofactored equation (noble) but not, or only sometimes, under the cofactorless one (OpenSSL
 *   behind node:crypto and WebCrypto), so the backends disagreed.
 *
 * The attack signatures are built in _ed25519-forgeries.ts.
 */
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { concatBytes, numberToBytesLE } from '@noble/curves/utils.js';
import { afterEach, describe, expect, it } from 'vitest';
import '../src/_node.ts';
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
import {
  A_SCALAR,
  CONTEXT,
  Fp,
  MESSAGES,
  Point,
  SMALL_ORDER,
  T8,
  UNIVERSAL,
  decodesStrictly,
  forge,
  framed,
  label,
} from './_ed25519-forgeries.ts';
import { hex } from './_hex.ts';

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
  ['sync on node', 'node', SYNC],
  ['sync on noble', 'noble', SYNC],
  ['async on node', 'node', ASYNC],
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
