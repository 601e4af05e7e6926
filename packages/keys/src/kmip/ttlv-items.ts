/**
 * Building TTLV items and reading children out of a decoded structure (ttlv.ts encodes and
 * decodes; KMIP 1.4 §9.1). A child of the wrong type is a TtlvError UNEXPECTED.
 */
import { TtlvError, type TtlvItem, type TtlvType } from './ttlv.ts';

type Of<T extends TtlvType> = Extract<TtlvItem, { type: T }>;

export const ttlv = {
  structure: (tag: number, value: TtlvItem[]): Of<'Structure'> => ({
    tag,
    type: 'Structure',
    value,
  }),
  integer: (tag: number, value: number): Of<'Integer'> => ({ tag, type: 'Integer', value }),
  longInteger: (tag: number, value: bigint): Of<'LongInteger'> => ({
    tag,
    type: 'LongInteger',
    value,
  }),
  bigInteger: (tag: number, value: bigint): Of<'BigInteger'> => ({
    tag,
    type: 'BigInteger',
    value,
  }),
  enumeration: (tag: number, value: number): Of<'Enumeration'> => ({
    tag,
    type: 'Enumeration',
    value,
  }),
  boolean: (tag: number, value: boolean): Of<'Boolean'> => ({ tag, type: 'Boolean', value }),
  text: (tag: number, value: string): Of<'TextString'> => ({ tag, type: 'TextString', value }),
  bytes: (tag: number, value: Uint8Array): Of<'ByteString'> => ({ tag, type: 'ByteString', value }),
  dateTime: (tag: number, value: bigint): Of<'DateTime'> => ({ tag, type: 'DateTime', value }),
  interval: (tag: number, value: number): Of<'Interval'> => ({ tag, type: 'Interval', value }),
};

const hexTag = (tag: number): string => `0x${tag.toString(16).padStart(6, '0')}`;

/** Every child of `parent` with `tag`, which must all be of `type`. */
export function childrenOf<T extends TtlvType>(parent: TtlvItem, tag: number, type: T): Of<T>[] {
  if (parent.type !== 'Structure')
    throw new TtlvError('UNEXPECTED', `${hexTag(parent.tag)} is not a structure`);
  const out: Of<T>[] = [];
  for (const c of parent.value) {
    if (c.tag !== tag) continue;
    if (c.type !== type)
      throw new TtlvError('UNEXPECTED', `${hexTag(tag)} is a ${c.type}, expected ${type}`);
    out.push(c as Of<T>);
  }
  return out;
}

/** The one child of `parent` with `tag`, or undefined. @throws TtlvError when repeated or mistyped. */
export function optionalChild<T extends TtlvType>(
  parent: TtlvItem,
  tag: number,
  type: T,
): Of<T> | undefined {
  const found = childrenOf(parent, tag, type);
  if (found.length > 1)
    throw new TtlvError('UNEXPECTED', `${hexTag(tag)} appears ${found.length} times`);
  return found[0];
}

/** The one child of `parent` with `tag`. @throws TtlvError when missing, repeated or mistyped. */
export function child<T extends TtlvType>(parent: TtlvItem, tag: number, type: T): Of<T> {
  const found = optionalChild(parent, tag, type);
  if (found === undefined) throw new TtlvError('UNEXPECTED', `${hexTag(tag)} is missing`);
  return found;
}
