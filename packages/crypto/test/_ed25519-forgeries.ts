/**
 * Ed25519 inputs that permissive verifiers accept and strict ones must not (small-order keys and
 * R, torsion components), built with @noble/curves' point and scalar-field API. Test inputs, not
 * signing code; used by ed25519-small-order.test.ts and backends-agree.test.ts.
 */
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, concatBytes, numberToBytesLE } from '@noble/curves/utils.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { hex, toHex } from './_hex.ts';

export const Point = ed25519.Point;
export const { Fn, Fp } = Point;
export const CONTEXT = 'latchkey.v1.msgsig';
export const MESSAGES = [
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

export interface Encoding {
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

export const SMALL_ORDER = smallOrderEncodings();
export const label = (e: Encoding): string =>
  `${toHex(e.bytes)}${e.canonical ? '' : ' (non-canonical)'}`;

/** R = identity, S = 0. */
export const UNIVERSAL = concatBytes(hex(ED25519_TORSION_SUBGROUP[0]!), new Uint8Array(32));

/** The message an Ed25519 signature covers under Latchkey's context framing. */
export const framed = (context: string, message: Uint8Array): Uint8Array => {
  const ctx = new TextEncoder().encode(context);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, ctx.length);
  return concatBytes(len, ctx, message);
};

/** S = r + H(R || A || M) * a mod L for a chosen point R and scalars r, a. */
export function forge(
  a: bigint,
  publicKey: Uint8Array,
  R: Uint8Array,
  r: bigint,
  message: Uint8Array,
): Uint8Array {
  const k = Fn.create(bytesToNumberLE(sha512(concatBytes(R, publicKey, message))));
  return concatBytes(R, Fn.toBytes(Fn.add(r, Fn.mul(k, a))));
}

export const T8 = Point.fromHex(ED25519_TORSION_SUBGROUP[1]!); // a point of order 8
export const A_SCALAR = Fn.create(
  bytesToNumberLE(sha512(new TextEncoder().encode('latchkey test key'))),
);

/** RFC 8032 §5.1.3 decoding (y < p, on the curve, no x = 0 with the sign bit set). */
export function decodesStrictly(bytes: Uint8Array): boolean {
  try {
    Point.fromBytes(bytes, false);
    return true;
  } catch {
    return false;
  }
}
