import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concatBytes, fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '../src/codec.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64Char = fc.constantFrom(...ALPHABET.split(''));

describe('base64url', () => {
  it('encodes the RFC 4648 §10 vectors (in the URL-safe alphabet, unpadded)', () => {
    const cases: [string, string][] = [
      ['', ''],
      ['f', 'Zg'],
      ['fo', 'Zm8'],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg'],
      ['fooba', 'Zm9vYmE'],
      ['foobar', 'Zm9vYmFy'],
    ];
    for (const [text, encoded] of cases) {
      expect(toBase64Url(utf8Encode(text))).toBe(encoded);
      expect(utf8Decode(fromBase64Url(encoded))).toBe(text);
    }
    expect(toBase64Url(new Uint8Array([0xfb, 0xff, 0xfe]))).toBe('-__-');
  });

  it('round-trips arbitrary bytes and agrees with Node as an oracle', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const text = toBase64Url(bytes);
        expect(text).toBe(Buffer.from(bytes).toString('base64url'));
        expect(fromBase64Url(text)).toEqual(bytes);
      }),
    );
  });

  it('round-trips every accepted string (canonical form only)', () => {
    fc.assert(
      fc.property(fc.array(b64Char, { maxLength: 64 }), (chars) => {
        const text = chars.join('');
        let bytes: Uint8Array;
        try {
          bytes = fromBase64Url(text);
        } catch (err) {
          expect(err).toBeInstanceOf(TypeError);
          return;
        }
        expect(toBase64Url(bytes)).toBe(text);
      }),
    );
  });

  it('rejects padding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
        const padded = Buffer.from(bytes)
          .toString('base64')
          .replace(/\+/g, '-')
          .replace(/\//g, '_');
        if (padded.endsWith('=')) {
          expect(() => fromBase64Url(padded)).toThrow(TypeError);
        }
        expect(() => fromBase64Url(`${toBase64Url(bytes)}=`)).toThrow(TypeError);
      }),
    );
    expect(() => fromBase64Url('Zg==')).toThrow(TypeError);
    expect(() => fromBase64Url('Zm8=')).toThrow(TypeError);
  });

  it('rejects characters outside the URL-safe alphabet', () => {
    const bad = fc.constantFrom(
      '+',
      '/',
      '=',
      ' ',
      '\n',
      '.',
      '*',
      '\u00e9',
      '\u0000',
      '\uffff',
      '😀',
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), bad, fc.nat(), (bytes, ch, at) => {
        const text = toBase64Url(bytes);
        const i = at % (text.length + 1);
        const tampered = text.slice(0, i) + ch + text.slice(i);
        expect(() => fromBase64Url(tampered)).toThrow(TypeError);
      }),
    );
  });

  it('rejects lengths of 1 modulo 4', () => {
    fc.assert(
      fc.property(fc.array(b64Char, { maxLength: 40 }), (chars) => {
        const text = chars.join('');
        const n = text.length - (text.length % 4) + 1;
        const candidate = (text + 'AAAAA').slice(0, n);
        expect(() => fromBase64Url(candidate)).toThrow(TypeError);
      }),
    );
  });

  it('rejects non-canonical trailing bits', () => {
    expect(() => fromBase64Url('Zh')).toThrow(TypeError); // 'Zg' is the canonical form of 'f'
    expect(() => fromBase64Url('Zm9')).toThrow(TypeError); // 'Zm8' is 'fo'
    expect(fromBase64Url('Zg')).toEqual(utf8Encode('f'));
  });

  it('rejects non-strings', () => {
    expect(() => fromBase64Url(42 as unknown as string)).toThrow(TypeError);
    expect(() => toBase64Url('abc' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('utf8', () => {
  it('round-trips well-formed strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 50 }), (text) => {
        expect(utf8Decode(utf8Encode(text))).toBe(text);
      }),
    );
  });

  it('refuses lone surrogates instead of replacing them', () => {
    expect(() => utf8Encode('a\ud800b')).toThrow(TypeError);
    expect(() => utf8Encode('\udc00')).toThrow(TypeError);
    expect(() => utf8Encode('\ud83d')).toThrow(TypeError);
    expect(utf8Encode('\ud83d\ude00')).toEqual(new Uint8Array([0xf0, 0x9f, 0x98, 0x80]));
  });

  it('decodes fatally', () => {
    expect(() => utf8Decode(new Uint8Array([0xff]))).toThrow(TypeError);
    expect(() => utf8Decode(new Uint8Array([0xc3]))).toThrow(TypeError);
    expect(() => utf8Decode(new Uint8Array([0xed, 0xa0, 0x80]))).toThrow(TypeError); // surrogate
    expect(utf8Decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x41]))).toBe('\ufeffA'); // BOM kept
  });
});

describe('concatBytes', () => {
  it('concatenates in order into a fresh array', () => {
    const a = new Uint8Array([1, 2]);
    const out = concatBytes(a, new Uint8Array(0), new Uint8Array([3]));
    expect(out).toEqual(new Uint8Array([1, 2, 3]));
    out[0] = 9;
    expect(a[0]).toBe(1);
    expect(concatBytes()).toEqual(new Uint8Array(0));
    expect(() => concatBytes(a, [1] as unknown as Uint8Array)).toThrow(TypeError);
  });
});
