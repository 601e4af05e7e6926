/**
 * KMIP TTLV encoding (KMIP 1.4 §9.1 "TTLV Encoding"): every item is a 3-byte tag, a 1-byte
 * type, a 4-byte big-endian length and a value padded with zeros to a multiple of 8 bytes.
 * Structures nest items; the other nine types are primitives.
 *
 * The decoder reads what a KMIP server sends, so it trusts nothing: every length is checked
 * against the bytes that are there and against the fixed size of its type, padding must be
 * zero, text must be valid UTF-8, and total size, nesting depth and item count are capped.
 * Anything else throws TtlvError; it never reads out of bounds or recurses without limit.
 */

/** The item types of KMIP 1.4 §9.1.1.2, by their one-byte code. */
export const TTLV_TYPES = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
} as const;

export type TtlvType = keyof typeof TTLV_TYPES;

/**
 * One decoded or to-be-encoded item. Integer is a signed 32-bit number, Enumeration and
 * Interval unsigned 32-bit; Long Integer and Big Integer are bigints (Big Integer is two's
 * complement of any multiple of 8 bytes); Date-Time is seconds since the Unix epoch (signed
 * 64-bit, as a bigint).
 */
export type TtlvItem =
  | { tag: number; type: 'Structure'; value: TtlvItem[] }
  | { tag: number; type: 'Integer'; value: number }
  | { tag: number; type: 'LongInteger'; value: bigint }
  | { tag: number; type: 'BigInteger'; value: bigint }
  | { tag: number; type: 'Enumeration'; value: number }
  | { tag: number; type: 'Boolean'; value: boolean }
  | { tag: number; type: 'TextString'; value: string }
  | { tag: number; type: 'ByteString'; value: Uint8Array }
  | { tag: number; type: 'DateTime'; value: bigint }
  | { tag: number; type: 'Interval'; value: number };

export type TtlvErrorCode =
  | 'TRUNCATED'
  | 'TRAILING_BYTES'
  | 'BAD_TAG'
  | 'BAD_TYPE'
  | 'BAD_LENGTH'
  | 'BAD_PADDING'
  | 'BAD_VALUE'
  | 'TOO_LARGE'
  | 'TOO_DEEP'
  | 'TOO_MANY_ITEMS'
  | 'UNEXPECTED';

/** A malformed or over-limit TTLV input, or a message that lacks a field the reader needs. */
export class TtlvError extends Error {
  override readonly name = 'TtlvError';
  constructor(
    readonly code: TtlvErrorCode,
    message: string,
    /** Byte offset in the input where decoding stopped, when known. */
    readonly offset?: number,
  ) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
  }
}

export interface TtlvLimits {
  /** Largest input accepted, in bytes (default 1 MiB, PyKMIP's own message limit). */
  maxBytes?: number;
  /** Deepest nesting of structures (default 16; KMIP 1.4 messages need about 7). */
  maxDepth?: number;
  /** Most items in the whole input (default 10 000). */
  maxItems?: number;
}

export const TTLV_DEFAULT_LIMITS: Required<TtlvLimits> = {
  maxBytes: 1 << 20,
  maxDepth: 16,
  maxItems: 10_000,
};

const HEADER = 8;
const CODE_TO_TYPE = new Map<number, TtlvType>(
  Object.entries(TTLV_TYPES).map(([k, v]) => [v, k as TtlvType]),
);
const FIXED_LENGTH: Partial<Record<TtlvType, number>> = {
  Integer: 4,
  LongInteger: 8,
  Enumeration: 4,
  Boolean: 8,
  DateTime: 8,
  Interval: 4,
};
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const padded = (n: number): number => (n + 7) & ~7;

/** Whether `tag` is a KMIP tag: 0x42xxxx (defined by the spec) or 0x54xxxx (extensions). */
export function isKmipTag(tag: number): boolean {
  const top = tag >>> 16;
  return Number.isInteger(tag) && tag >= 0 && tag <= 0xffffff && (top === 0x42 || top === 0x54);
}

// ---------------------------------------------------------------------------------------------
// Encoding

function valueBytes(item: TtlvItem): Uint8Array {
  switch (item.type) {
    case 'Structure': {
      const parts = item.value.map(encodeTtlv);
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    }
    case 'Integer': {
      if (!Number.isInteger(item.value) || item.value < -(2 ** 31) || item.value >= 2 ** 31) {
        throw new RangeError('TTLV Integer must be a signed 32-bit integer');
      }
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, item.value);
      return b;
    }
    case 'Enumeration':
    case 'Interval': {
      if (!Number.isInteger(item.value) || item.value < 0 || item.value > 0xffffffff) {
        throw new RangeError(`TTLV ${item.type} must be an unsigned 32-bit integer`);
      }
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, item.value);
      return b;
    }
    case 'LongInteger':
    case 'DateTime': {
      if (item.value < -(2n ** 63n) || item.value >= 2n ** 63n)
        throw new RangeError(`TTLV ${item.type} must fit in 64 bits`);
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, item.value);
      return b;
    }
    case 'BigInteger':
      return bigIntegerBytes(item.value);
    case 'Boolean': {
      const b = new Uint8Array(8);
      b[7] = item.value ? 1 : 0;
      return b;
    }
    case 'TextString':
      return utf8.encode(item.value);
    case 'ByteString':
      return item.value;
  }
}

/** Two's complement, big-endian, sign-extended to a multiple of 8 bytes (KMIP 1.4 §9.1.1.4). */
function bigIntegerBytes(v: bigint): Uint8Array {
  let len = 8;
  while (v < -(1n << BigInt(len * 8 - 1)) || v >= 1n << BigInt(len * 8 - 1)) len += 8;
  let x = BigInt.asUintN(len * 8, v);
  const b = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return b;
}

/**
 * Encodes one item (and, for a Structure, everything in it).
 * @throws RangeError for a tag outside 0x42xxxx/0x54xxxx or a value out of range of its type.
 */
export function encodeTtlv(item: TtlvItem): Uint8Array {
  if (!isKmipTag(item.tag)) throw new RangeError(`not a KMIP tag: ${item.tag}`);
  const value = valueBytes(item);
  const out = new Uint8Array(HEADER + padded(value.length));
  out[0] = item.tag >>> 16;
  out[1] = (item.tag >>> 8) & 0xff;
  out[2] = item.tag & 0xff;
  out[3] = TTLV_TYPES[item.type];
  new DataView(out.buffer).setUint32(4, value.length);
  out.set(value, HEADER);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

interface Cursor {
  bytes: Uint8Array;
  view: DataView;
  items: number;
  limits: Required<TtlvLimits>;
}

/** Decodes the item at `at`, which must end by `end`; returns it and the offset after it. */
function decodeAt(c: Cursor, at: number, end: number, depth: number): [TtlvItem, number] {
  if (++c.items > c.limits.maxItems)
    throw new TtlvError('TOO_MANY_ITEMS', `more than ${c.limits.maxItems} items`, at);
  if (end - at < HEADER) throw new TtlvError('TRUNCATED', 'item header cut short', at);
  const tag = (c.bytes[at]! << 16) | (c.bytes[at + 1]! << 8) | c.bytes[at + 2]!;
  if (!isKmipTag(tag)) throw new TtlvError('BAD_TAG', `not a KMIP tag: 0x${tag.toString(16)}`, at);
  const type = CODE_TO_TYPE.get(c.bytes[at + 3]!);
  if (type === undefined)
    throw new TtlvError('BAD_TYPE', `unknown item type 0x${c.bytes[at + 3]!.toString(16)}`, at + 3);
  const length = c.view.getUint32(at + 4);
  const start = at + HEADER;
  // Compare before adding so that a hostile 4 GiB length cannot overflow anything.
  if (length > end - start)
    throw new TtlvError('TRUNCATED', `length ${length} runs past the end`, at + 4);
  const next = start + padded(length);
  if (next > end) throw new TtlvError('TRUNCATED', 'padding runs past the end', at + 4);
  const fixed = FIXED_LENGTH[type];
  if (fixed !== undefined && length !== fixed)
    throw new TtlvError('BAD_LENGTH', `${type} must be ${fixed} bytes, not ${length}`, at + 4);
  for (let i = start + length; i < next; i++) {
    if (c.bytes[i] !== 0) throw new TtlvError('BAD_PADDING', 'non-zero padding', i);
  }
  const v = c.view;
  let item: TtlvItem;
  switch (type) {
    case 'Structure': {
      if (depth >= c.limits.maxDepth)
        throw new TtlvError('TOO_DEEP', `structures nested deeper than ${c.limits.maxDepth}`, at);
      if (length % 8 !== 0)
        throw new TtlvError('BAD_LENGTH', 'structure length is not a multiple of 8', at + 4);
      const children: TtlvItem[] = [];
      let p = start;
      while (p < start + length) {
        const [child, after] = decodeAt(c, p, start + length, depth + 1);
        children.push(child);
        p = after;
      }
      item = { tag, type, value: children };
      break;
    }
    case 'Integer':
      item = { tag, type, value: v.getInt32(start) };
      break;
    case 'Enumeration':
    case 'Interval':
      item = { tag, type, value: v.getUint32(start) };
      break;
    case 'LongInteger':
    case 'DateTime':
      item = { tag, type, value: v.getBigInt64(start) };
      break;
    case 'BigInteger': {
      if (length === 0 || length % 8 !== 0)
        throw new TtlvError(
          'BAD_LENGTH',
          'Big Integer length must be a positive multiple of 8',
          at + 4,
        );
      let x = 0n;
      for (let i = start; i < start + length; i++) x = (x << 8n) | BigInt(c.bytes[i]!);
      item = { tag, type, value: BigInt.asIntN(length * 8, x) };
      break;
    }
    case 'Boolean': {
      const hi = v.getUint32(start);
      const lo = v.getUint32(start + 4);
      if (hi !== 0 || lo > 1) throw new TtlvError('BAD_VALUE', 'Boolean must be 0 or 1', start);
      item = { tag, type, value: lo === 1 };
      break;
    }
    case 'TextString': {
      let text: string;
      try {
        text = utf8Strict.decode(c.bytes.subarray(start, start + length));
      } catch {
        throw new TtlvError('BAD_VALUE', 'Text String is not valid UTF-8', start);
      }
      item = { tag, type, value: text };
      break;
    }
    case 'ByteString':
      item = { tag, type, value: c.bytes.slice(start, start + length) };
      break;
  }
  return [item, next];
}

/**
 * Decodes exactly one item that spans all of `bytes`.
 * @throws TtlvError for truncated, malformed, trailing or over-limit input.
 */
export function decodeTtlv(bytes: Uint8Array, limits: TtlvLimits = {}): TtlvItem {
  const l = { ...TTLV_DEFAULT_LIMITS, ...limits };
  if (bytes.length > l.maxBytes)
    throw new TtlvError('TOO_LARGE', `${bytes.length} bytes exceed the limit of ${l.maxBytes}`);
  const c: Cursor = {
    bytes,
    view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    items: 0,
    limits: l,
  };
  const [item, end] = decodeAt(c, 0, bytes.length, 0);
  if (end !== bytes.length)
    throw new TtlvError('TRAILING_BYTES', `${bytes.length - end} bytes after the item`, end);
  return item;
}

/**
 * The total length of the item whose 8-byte header starts `bytes`, for framing a stream, or
 * undefined while fewer than 8 bytes are there.
 * @throws TtlvError TOO_LARGE when the item would exceed `maxBytes`, BAD_TAG/BAD_TYPE for a
 *   header that is not `expectTag` as a Structure.
 */
export function ttlvFrameLength(
  bytes: Uint8Array,
  expectTag: number,
  maxBytes: number,
): number | undefined {
  if (bytes.length < HEADER) return undefined;
  const tag = (bytes[0]! << 16) | (bytes[1]! << 8) | bytes[2]!;
  if (tag !== expectTag)
    throw new TtlvError(
      'BAD_TAG',
      `expected tag 0x${expectTag.toString(16)}, got 0x${tag.toString(16)}`,
      0,
    );
  if (bytes[3] !== TTLV_TYPES.Structure)
    throw new TtlvError('BAD_TYPE', 'message is not a structure', 3);
  const length = new DataView(bytes.buffer, bytes.byteOffset, HEADER).getUint32(4);
  if (length > maxBytes - HEADER)
    throw new TtlvError(
      'TOO_LARGE',
      `message of ${length} bytes exceeds the limit of ${maxBytes}`,
      4,
    );
  return HEADER + length;
}
