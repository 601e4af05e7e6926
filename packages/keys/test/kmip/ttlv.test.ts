/**
 * TTLV against the KMIP specification's encoding examples and full messages of the KMIP test
 * cases (test/vectors/kmip-ttlv.json, sources in test/vectors/README.md), plus round-trip
 * properties and hostile input.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TAG } from '../../src/kmip/tags.ts';
import {
  decodeTtlv,
  encodeTtlv,
  ttlvFrameLength,
  TtlvError,
  type TtlvItem,
  type TtlvType,
} from '../../src/kmip/ttlv.ts';
import { child, childrenOf, ttlv } from '../../src/kmip/ttlv-items.ts';

interface Vectors {
  primitives: { name: string; type: TtlvType; value: string | null; encoding: string }[];
  messages: { name: string; encoding: string }[];
}
const vectors = JSON.parse(
  readFileSync(new URL('../vectors/kmip-ttlv.json', import.meta.url), 'utf8'),
) as Vectors;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

function expected(v: Vectors['primitives'][number]): TtlvItem {
  const tag = parseInt(v.encoding.slice(0, 6), 16);
  const s = v.value ?? '';
  switch (v.type) {
    case 'Integer':
      return ttlv.integer(tag, Number(s));
    case 'LongInteger':
      return ttlv.longInteger(tag, BigInt(s));
    case 'BigInteger':
      return ttlv.bigInteger(tag, BigInt(s));
    case 'Enumeration':
      return ttlv.enumeration(tag, Number(s));
    case 'Boolean':
      return ttlv.boolean(tag, s === 'true');
    case 'TextString':
      return ttlv.text(tag, s);
    case 'ByteString':
      return ttlv.bytes(tag, unhex(s));
    case 'DateTime':
      return ttlv.dateTime(tag, BigInt(s));
    case 'Interval':
      return ttlv.interval(tag, Number(s));
    case 'Structure':
      return ttlv.structure(tag, [ttlv.enumeration(0x420004, 254), ttlv.integer(0x420005, 255)]);
  }
}

/** Rewrites a TTLV item's header length at `at` (tests of hostile lengths). */
function withLength(b: Uint8Array, at: number, length: number): Uint8Array {
  const c = Uint8Array.from(b);
  new DataView(c.buffer).setUint32(at + 4, length);
  return c;
}

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof TtlvError) return err.code;
    throw err;
  }
  return 'OK';
};

describe('TTLV: KMIP 1.4 §9.1.2 encoding examples', () => {
  it('has every item type among the vectors', () => {
    expect(new Set(vectors.primitives.map((v) => v.type)).size).toBe(10);
  });
  for (const v of vectors.primitives) {
    it(v.name, () => {
      const item = expected(v);
      expect(hex(encodeTtlv(item))).toBe(v.encoding);
      expect(decodeTtlv(unhex(v.encoding))).toEqual(item);
    });
  }
  it('spells out the Integer 8 example', () => {
    expect(hex(encodeTtlv(ttlv.integer(0x420020, 8)))).toBe(
      '420020' + '02' + '00000004' + '0000000800000000',
    );
  });
});

describe('TTLV: KMIP test case messages', () => {
  for (const m of vectors.messages) {
    it(`${m.name}: decodes and re-encodes byte for byte`, () => {
      const bytes = unhex(m.encoding);
      const item = decodeTtlv(bytes);
      expect(hex(encodeTtlv(item))).toBe(m.encoding);
      expect(ttlvFrameLength(bytes, item.tag, 1 << 20)).toBe(bytes.length);
    });
  }

  it('reads the fields of the Create request and response (test case 3.1.1)', () => {
    const req = decodeTtlv(unhex(vectors.messages[0]!.encoding));
    expect(req.tag).toBe(TAG.RequestMessage);
    const version = child(
      child(req, TAG.RequestHeader, 'Structure'),
      TAG.ProtocolVersion,
      'Structure',
    );
    expect(child(version, TAG.ProtocolVersionMajor, 'Integer').value).toBe(1);
    const item = child(req, TAG.BatchItem, 'Structure');
    expect(child(item, TAG.Operation, 'Enumeration').value).toBe(1);
    const attrs = childrenOf(
      child(child(item, TAG.RequestPayload, 'Structure'), TAG.TemplateAttribute, 'Structure'),
      TAG.Attribute,
      'Structure',
    );
    expect(attrs.map((a) => child(a, TAG.AttributeName, 'TextString').value)).toEqual([
      'Cryptographic Algorithm',
      'Cryptographic Length',
      'Cryptographic Usage Mask',
    ]);
    expect(attrs.map((a) => a.value[1]?.value)).toEqual([3, 128, 12]);

    const res = decodeTtlv(unhex(vectors.messages[1]!.encoding));
    expect(
      child(child(res, TAG.ResponseHeader, 'Structure'), TAG.TimeStamp, 'DateTime').value,
    ).toBe(0x4f9a54e5n);
    const rItem = child(res, TAG.BatchItem, 'Structure');
    expect(child(rItem, TAG.ResultStatus, 'Enumeration').value).toBe(0);
    expect(
      child(child(rItem, TAG.ResponsePayload, 'Structure'), TAG.UniqueIdentifier, 'TextString')
        .value,
    ).toBe('fb4b5b9c-6188-4c63-8142-fe9c328129fc');
  });

  it('reads the error response (Operation Failed, Invalid Message)', () => {
    const res = decodeTtlv(unhex(vectors.messages[4]!.encoding));
    const item = child(res, TAG.BatchItem, 'Structure');
    expect(child(item, TAG.ResultStatus, 'Enumeration').value).toBe(1);
    expect(child(item, TAG.ResultReason, 'Enumeration').value).toBe(4);
    expect(child(item, TAG.ResultMessage, 'TextString').value).toBe(
      'Default response. No operations supported.',
    );
  });
});

describe('TTLV: hostile input', () => {
  const create = unhex(vectors.messages[1]!.encoding);

  it('refuses every truncation of a real message with a typed error', () => {
    for (let n = 0; n < create.length; n++) {
      expect(codeOf(() => decodeTtlv(create.subarray(0, n)))).not.toBe('OK');
    }
  });

  it('refuses lengths that lie, in the outer structure and in a child', () => {
    expect(codeOf(() => decodeTtlv(withLength(create, 0, 0xffffffff)))).toBe('TRUNCATED');
    // A structure that claims less than its children take cuts the last child short.
    expect(codeOf(() => decodeTtlv(withLength(create, 0, create.length - 8 - 8)))).toBe(
      'TRUNCATED',
    );
    const longer = new Uint8Array(create.length + 8);
    longer.set(create);
    expect(codeOf(() => decodeTtlv(longer))).toBe('TRAILING_BYTES');
    expect(codeOf(() => decodeTtlv(withLength(create, 0, create.length - 8 - 3)))).toBe(
      'BAD_LENGTH',
    );
    // The Protocol Version Major integer sits at byte 24 and must be 4 bytes long.
    expect(codeOf(() => decodeTtlv(withLength(create, 24, 8)))).toBe('BAD_LENGTH');
  });

  it('refuses unknown types, non-KMIP tags, non-zero padding, bad booleans and bad UTF-8', () => {
    expect(codeOf(() => decodeTtlv(unhex('4200200b000000040000000800000000')))).toBe('BAD_TYPE');
    expect(codeOf(() => decodeTtlv(unhex('43002002000000040000000800000000')))).toBe('BAD_TAG');
    expect(codeOf(() => decodeTtlv(unhex('42002002000000040000000800000001')))).toBe('BAD_PADDING');
    expect(codeOf(() => decodeTtlv(unhex('42002006000000080000000000000002')))).toBe('BAD_VALUE');
    expect(codeOf(() => decodeTtlv(unhex('4200200700000002c3280000000000000')))).not.toBe('OK');
    expect(codeOf(() => decodeTtlv(unhex('4200200700000002c328000000000000')))).toBe('BAD_VALUE');
    expect(codeOf(() => decodeTtlv(unhex('42002004000000040000000100000000')))).toBe('BAD_LENGTH');
  });

  it('caps depth, item count and size', () => {
    let deep: TtlvItem = ttlv.integer(0x420001, 1);
    for (let i = 0; i < 40; i++) deep = ttlv.structure(0x420001, [deep]);
    const deepBytes = encodeTtlv(deep);
    expect(codeOf(() => decodeTtlv(deepBytes))).toBe('TOO_DEEP');
    expect(codeOf(() => decodeTtlv(deepBytes, { maxDepth: 64 }))).toBe('OK');
    const wide = encodeTtlv(
      ttlv.structure(
        0x420001,
        Array.from({ length: 200 }, () => ttlv.boolean(0x420002, true)),
      ),
    );
    expect(codeOf(() => decodeTtlv(wide, { maxItems: 100 }))).toBe('TOO_MANY_ITEMS');
    expect(codeOf(() => decodeTtlv(wide, { maxBytes: 1000 }))).toBe('TOO_LARGE');
    expect(
      codeOf(() =>
        ttlvFrameLength(withLength(create, 0, 0x7fffffff), TAG.ResponseMessage, 1 << 20),
      ),
    ).toBe('TOO_LARGE');
    expect(codeOf(() => ttlvFrameLength(create, TAG.RequestMessage, 1 << 20))).toBe('BAD_TAG');
    expect(ttlvFrameLength(create.subarray(0, 7), TAG.ResponseMessage, 1 << 20)).toBeUndefined();
  });

  it('never throws anything but TtlvError on random or mutated bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        expect([
          'OK',
          'TRUNCATED',
          'TRAILING_BYTES',
          'BAD_TAG',
          'BAD_TYPE',
          'BAD_LENGTH',
          'BAD_PADDING',
          'BAD_VALUE',
          'TOO_DEEP',
          'TOO_MANY_ITEMS',
        ]).toContain(codeOf(() => decodeTtlv(b)));
      }),
    );
    fc.assert(
      fc.property(fc.nat(create.length - 1), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const m = Uint8Array.from(create);
        m[at] = (m[at] ?? 0) ^ x;
        codeOf(() => decodeTtlv(m));
      }),
    );
  });
});

describe('TTLV: round trip', () => {
  const tag = fc.integer({ min: 0x420000, max: 0x42ffff });
  const primitive: fc.Arbitrary<TtlvItem> = fc.oneof(
    fc
      .tuple(tag, fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }))
      .map(([t, v]) => ttlv.integer(t, v)),
    fc
      .tuple(tag, fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }))
      .map(([t, v]) => ttlv.longInteger(t, v)),
    fc
      .tuple(tag, fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }))
      .map(([t, v]) => ttlv.bigInteger(t, v)),
    fc.tuple(tag, fc.nat(0xffffffff)).map(([t, v]) => ttlv.enumeration(t, v)),
    fc.tuple(tag, fc.boolean()).map(([t, v]) => ttlv.boolean(t, v)),
    fc.tuple(tag, fc.string({ unit: 'grapheme' })).map(([t, v]) => ttlv.text(t, v)),
    fc.tuple(tag, fc.uint8Array({ maxLength: 40 })).map(([t, v]) => ttlv.bytes(t, v)),
    fc.tuple(tag, fc.bigInt({ min: 0n, max: 2n ** 40n })).map(([t, v]) => ttlv.dateTime(t, v)),
    fc.tuple(tag, fc.nat(0xffffffff)).map(([t, v]) => ttlv.interval(t, v)),
  );
  const { item } = fc.letrec<{ item: TtlvItem }>((rec) => ({
    item: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      primitive,
      fc.tuple(tag, fc.array(rec('item'), { maxLength: 4 })).map(([t, v]) => ttlv.structure(t, v)),
    ),
  }));

  it('decode(encode(x)) is x, and every encoding is a multiple of 8 bytes', () => {
    fc.assert(
      fc.property(item, (x) => {
        const b = encodeTtlv(x);
        expect(b.length % 8).toBe(0);
        expect(decodeTtlv(b)).toEqual(x);
      }),
    );
  });

  it('refuses out-of-range values when encoding', () => {
    expect(() => encodeTtlv(ttlv.integer(0x420001, 2 ** 31))).toThrow(RangeError);
    expect(() => encodeTtlv(ttlv.enumeration(0x420001, -1))).toThrow(RangeError);
    expect(() => encodeTtlv(ttlv.longInteger(0x420001, 2n ** 63n))).toThrow(RangeError);
    expect(() => encodeTtlv(ttlv.integer(0x430001, 1))).toThrow(RangeError);
  });
});
