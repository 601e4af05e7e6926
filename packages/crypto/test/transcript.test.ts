import { describe, expect, it } from 'vitest';
import { concatBytes, utf8Encode } from '../src/codec.ts';
import { sha256 } from '../src/mac.ts';
import { ZERO_HASH, chainStep, transcriptStep } from '../src/transcript.ts';

const u32 = (n: number) => new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);

describe('chainStep', () => {
  it('is SHA-256 of the domain, the previous value, the counter, the msgId and the plaintext hash', () => {
    const pt = utf8Encode('{"type":"text","text":"hi"}');
    const expected = sha256(
      concatBytes(
        utf8Encode('latchkey.v2.chain'),
        ZERO_HASH,
        u32(1),
        u32(3),
        utf8Encode('m_1'),
        sha256(pt),
      ),
    );
    expect(chainStep(ZERO_HASH, 1, 'm_1', pt)).toEqual(expected);
  });

  it('differs for a different counter, msgId, plaintext or previous value', () => {
    const pt = utf8Encode('a');
    const base = chainStep(ZERO_HASH, 1, 'm', pt);
    expect(chainStep(ZERO_HASH, 2, 'm', pt)).not.toEqual(base);
    expect(chainStep(ZERO_HASH, 1, 'n', pt)).not.toEqual(base);
    expect(chainStep(ZERO_HASH, 1, 'm', utf8Encode('b'))).not.toEqual(base);
    expect(chainStep(base, 1, 'm', pt)).not.toEqual(base);
  });

  it('refuses a counter of 0 and a previous value that is not 32 bytes', () => {
    expect(() => chainStep(ZERO_HASH, 0, 'm', new Uint8Array())).toThrow(RangeError);
    expect(() => chainStep(new Uint8Array(31), 1, 'm', new Uint8Array())).toThrow(RangeError);
  });
});

describe('transcriptStep', () => {
  it('is SHA-256 of the domain, the previous hash, the seq as u64 and the signature hash', () => {
    const sig = new Uint8Array(64).fill(3);
    const expected = sha256(
      concatBytes(
        utf8Encode('latchkey.v2.transcript'),
        ZERO_HASH,
        new Uint8Array([0, 0, 0, 0, 0, 0, 0, 9]),
        sha256(sig),
      ),
    );
    expect(transcriptStep(ZERO_HASH, 9, sig)).toEqual(expected);
  });

  it('orders: swapping two envelopes changes the hash', () => {
    const a = new Uint8Array(64).fill(1);
    const b = new Uint8Array(64).fill(2);
    const ab = transcriptStep(transcriptStep(ZERO_HASH, 1, a), 2, b);
    const ba = transcriptStep(transcriptStep(ZERO_HASH, 1, b), 2, a);
    expect(ab).not.toEqual(ba);
  });

  it('refuses seq 0', () => {
    expect(() => transcriptStep(ZERO_HASH, 0, new Uint8Array(64))).toThrow(RangeError);
  });
});
