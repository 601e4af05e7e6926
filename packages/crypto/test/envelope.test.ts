import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import '../src/_node.ts';
import { AuthenticationError, setAeadBackend } from '../src/aead.ts';
import { concatBytes, toBase64Url } from '../src/codec.ts';
import { envelopeAad, keyFingerprint, openEnvelope, sealEnvelope } from '../src/envelope.ts';
import type { EnvelopeHeader } from '../src/envelope.ts';
import { generateSigningKeyPair, setEd25519Backend, verifyWithContext } from '../src/sign.ts';
import { generateContentKey } from '../src/wrap.ts';

const header: EnvelopeHeader = {
  v: 2,
  alg: 'latchkey.v1.aes256gcm',
  contactId: 'c_01HZX3',
  epoch: 3,
  senderId: 'p_visitor',
  msgId: 'm_0123456789abcdef',
  sentAt: 1_732_000_000_000,
  ctr: 5,
  prev: new Uint8Array(32).fill(7),
  seenSeq: 41,
  seenHash: new Uint8Array(32).fill(9),
};
const key = generateContentKey();
const sender = generateSigningKeyPair();
const plaintext = new TextEncoder().encode('{"type":"text","text":"hello"}');

const arbId = fc.string({ unit: 'grapheme', maxLength: 24 });
const arbHeader: fc.Arbitrary<EnvelopeHeader> = fc.record({
  v: fc.constant(2 as const),
  alg: fc.constant('latchkey.v1.aes256gcm' as const),
  contactId: arbId,
  epoch: fc.integer({ min: 0, max: 0xffff_ffff }),
  senderId: arbId,
  msgId: arbId,
  sentAt: fc.maxSafeNat(),
  ctr: fc.integer({ min: 1, max: 0xffff_ffff }),
  prev: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  seenSeq: fc.maxSafeNat(),
  seenHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
});

async function seal(h: EnvelopeHeader = header, pt: Uint8Array = plaintext) {
  return sealEnvelope({ key, header: h, plaintext: pt, signingKey: sender.secretKey });
}

afterEach(() => {
  setAeadBackend('auto');
  setEd25519Backend('auto');
});

describe('envelopeAad', () => {
  it('is the domain string then each field, length-prefixed or fixed-width big-endian', () => {
    const aad = envelopeAad({
      ...header,
      contactId: 'c',
      senderId: 's',
      msgId: 'm',
      epoch: 258,
      sentAt: 2 ** 40 + 1,
    });
    const u32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
    const str = (s: string) => [...u32(s.length), ...Buffer.from(s)];
    const expected = [
      ...Buffer.from('latchkey.v2.envelope'),
      ...u32(2),
      ...str('latchkey.v1.aes256gcm'),
      ...str('c'),
      ...u32(258),
      ...str('s'),
      ...str('m'),
      ...[0, 0, 1, 0, 0, 0, 0, 1],
      ...u32(5),
      ...new Array<number>(32).fill(7),
      ...[0, 0, 0, 0, 0, 0, 0, 41],
      ...new Array<number>(32).fill(9),
    ];
    expect([...aad]).toEqual(expected);
  });

  it('is injective: different headers never give the same bytes', () => {
    fc.assert(
      fc.property(arbHeader, arbHeader, (a, b) => {
        const same = JSON.stringify(a) === JSON.stringify(b);
        expect(toBase64Url(envelopeAad(a)) === toBase64Url(envelopeAad(b))).toBe(same);
      }),
    );
    // Shifting characters between adjacent fields must not collide.
    const a = envelopeAad({ ...header, senderId: 'ab', msgId: 'c' });
    const b = envelopeAad({ ...header, senderId: 'a', msgId: 'bc' });
    expect(toBase64Url(a)).not.toBe(toBase64Url(b));
  });

  it('rejects malformed headers as misuse', () => {
    expect(() => envelopeAad({ ...header, epoch: -1 })).toThrow(RangeError);
    expect(() => envelopeAad({ ...header, epoch: 2 ** 32 })).toThrow(RangeError);
    expect(() => envelopeAad({ ...header, epoch: 1.5 })).toThrow(RangeError);
    expect(() => envelopeAad({ ...header, sentAt: 2 ** 53 })).toThrow(RangeError);
    expect(() => envelopeAad({ ...header, sentAt: '1' as unknown as number })).toThrow(TypeError);
    expect(() => envelopeAad({ ...header, contactId: 7 as unknown as string })).toThrow(TypeError);
    expect(() => envelopeAad({ ...header, senderId: '\udc00' })).toThrow(TypeError);
    expect(() => envelopeAad({ ...header, v: 1 as 2 })).toThrow(TypeError);
    expect(() => envelopeAad({ ...header, ctr: 0 })).toThrow(RangeError);
    expect(() => envelopeAad({ ...header, prev: new Uint8Array(31) })).toThrow(RangeError);
    expect(() => envelopeAad({ ...header, seenHash: new Uint8Array(33) })).toThrow(RangeError);
    expect(() => envelopeAad(null as unknown as EnvelopeHeader)).toThrow(TypeError);
  });
});

describe('sealEnvelope / openEnvelope', () => {
  it('round-trips arbitrary plaintexts and headers on every backend', async () => {
    await fc.assert(
      fc.asyncProperty(
        arbHeader,
        fc.uint8Array({ maxLength: 1024 }),
        fc.constantFrom('node', 'webcrypto', 'noble' as const),
        async (h, pt, backend) => {
          setAeadBackend(backend);
          setEd25519Backend(backend);
          const sealed = await seal(h, pt);
          expect(sealed.nonce).toHaveLength(12);
          expect(sealed.sig).toHaveLength(64);
          expect(sealed.ciphertext).toHaveLength(pt.length + 16);
          const signed = concatBytes(envelopeAad(h), sealed.nonce, sealed.ciphertext);
          expect(
            verifyWithContext(sender.publicKey, 'latchkey.v1.msgsig', signed, sealed.sig),
          ).toBe(true);
          const opened = await openEnvelope({
            key,
            header: h,
            ...sealed,
            verifyKey: sender.publicKey,
          });
          expect(opened).toEqual(pt);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('uses a fresh random nonce unless one is given', async () => {
    const a = await seal();
    const b = await seal();
    expect(a.nonce).not.toEqual(b.nonce);
    const nonce = new Uint8Array(12).fill(9);
    const c = await sealEnvelope({ key, header, plaintext, signingKey: sender.secretKey, nonce });
    const d = await sealEnvelope({ key, header, plaintext, signingKey: sender.secretKey, nonce });
    expect(c).toEqual(d);
    expect(c.nonce).toEqual(nonce);
  });

  it('fails with AuthenticationError when any header field changes', async () => {
    const sealed = await seal();
    const changed: [string, EnvelopeHeader][] = [
      ['contactId', { ...header, contactId: 'c_01HZX4' }],
      ['epoch', { ...header, epoch: 4 }],
      ['senderId', { ...header, senderId: 'p_agent' }],
      ['msgId', { ...header, msgId: 'm_0123456789abcdeg' }],
      ['sentAt', { ...header, sentAt: header.sentAt + 1 }],
      ['alg', { ...header, alg: 'latchkey.v1.aes128gcm' as EnvelopeHeader['alg'] }],
      ['v', { ...header, v: 1 as EnvelopeHeader['v'] }],
      ['ctr', { ...header, ctr: header.ctr + 1 }],
      ['prev', { ...header, prev: new Uint8Array(32).fill(8) }],
      ['seenSeq', { ...header, seenSeq: header.seenSeq - 1 }],
      ['seenHash', { ...header, seenHash: new Uint8Array(32) }],
    ];
    for (const [field, h] of changed) {
      await expect(
        openEnvelope({ key, header: h, ...sealed, verifyKey: sender.publicKey }),
        field,
      ).rejects.toThrow(AuthenticationError);
    }
    // The untouched envelope still opens.
    expect(await openEnvelope({ key, header, ...sealed, verifyKey: sender.publicKey })).toEqual(
      plaintext,
    );
  });

  it('fails with AuthenticationError for a changed nonce, ciphertext, signature or verify key', async () => {
    const sealed = await seal();
    const flip = (bytes: Uint8Array, bit: number): Uint8Array => {
      const out = bytes.slice();
      out[bit >>> 3]! ^= 1 << (bit & 7);
      return out;
    };
    const open = (over: Partial<Parameters<typeof openEnvelope>[0]>) =>
      openEnvelope({ key, header, ...sealed, verifyKey: sender.publicKey, ...over });
    await expect(open({ nonce: flip(sealed.nonce, 0) })).rejects.toThrow(AuthenticationError);
    await expect(open({ ciphertext: flip(sealed.ciphertext, 13) })).rejects.toThrow(
      AuthenticationError,
    );
    await expect(open({ ciphertext: sealed.ciphertext.subarray(1) })).rejects.toThrow(
      AuthenticationError,
    );
    await expect(open({ sig: flip(sealed.sig, 100) })).rejects.toThrow(AuthenticationError);
    await expect(open({ sig: sealed.sig.subarray(0, 63) })).rejects.toThrow(AuthenticationError);
    await expect(open({ verifyKey: generateSigningKeyPair().publicKey })).rejects.toThrow(
      AuthenticationError,
    );
    await expect(open({ key: generateContentKey() })).rejects.toThrow(AuthenticationError);
  });

  it('fails for any single flipped bit of nonce, ciphertext or signature', async () => {
    const sealed = await seal();
    const blob = new Uint8Array([...sealed.nonce, ...sealed.ciphertext, ...sealed.sig]);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: blob.length * 8 - 1 }), async (bit) => {
        const b = blob.slice();
        b[bit >>> 3]! ^= 1 << (bit & 7);
        const nonce = b.subarray(0, 12);
        const ciphertext = b.subarray(12, 12 + sealed.ciphertext.length);
        const sig = b.subarray(12 + sealed.ciphertext.length);
        const err = await openEnvelope({
          key,
          header,
          nonce,
          ciphertext,
          sig,
          verifyKey: sender.publicKey,
        }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AuthenticationError);
        expect((err as Error).message).toBe('authentication failed');
      }),
      { numRuns: 200 },
    );
  });

  it('checks the signature before decrypting: a re-encryption by another member fails', async () => {
    // A member who holds the content key but not the sender's signing key re-seals a forged
    // message under the sender's header; the AES-GCM tag is valid, the signature is not.
    const mallory = generateSigningKeyPair();
    const forged = await sealEnvelope({
      key,
      header,
      plaintext: new Uint8Array([1]),
      signingKey: mallory.secretKey,
    });
    await expect(
      openEnvelope({ key, header, ...forged, verifyKey: sender.publicKey }),
    ).rejects.toThrow(AuthenticationError);
  });

  it('treats misuse as TypeError/RangeError', async () => {
    const sealed = await seal();
    await expect(
      sealEnvelope({ key: new Uint8Array(16), header, plaintext, signingKey: sender.secretKey }),
    ).rejects.toThrow(RangeError);
    await expect(
      sealEnvelope({
        key,
        header,
        plaintext,
        signingKey: sender.secretKey,
        nonce: new Uint8Array(8),
      }),
    ).rejects.toThrow(RangeError);
    await expect(
      sealEnvelope({
        key,
        header,
        plaintext: 'x' as unknown as Uint8Array,
        signingKey: sender.secretKey,
      }),
    ).rejects.toThrow(TypeError);
    await expect(
      sealEnvelope({
        key,
        header: { ...header, epoch: -1 },
        plaintext,
        signingKey: sender.secretKey,
      }),
    ).rejects.toThrow(RangeError);
    await expect(
      openEnvelope({ key, header, ...sealed, verifyKey: new Uint8Array(31) }),
    ).rejects.toThrow(RangeError);
    await expect(
      openEnvelope({
        key,
        header,
        ...sealed,
        nonce: new Uint8Array(16),
        verifyKey: sender.publicKey,
      }),
    ).rejects.toThrow(RangeError);
  });
});

describe('keyFingerprint', () => {
  it('is 8 groups of 4 uppercase hex digits, bound to key, contact and epoch', () => {
    const fp = keyFingerprint(key, 'c1', 0);
    expect(fp).toMatch(/^[0-9A-F]{4}( [0-9A-F]{4}){7}$/);
    expect(keyFingerprint(key, 'c1', 0)).toBe(fp);
    expect(keyFingerprint(key, 'c2', 0)).not.toBe(fp);
    expect(keyFingerprint(key, 'c1', 1)).not.toBe(fp);
    expect(keyFingerprint(generateContentKey(), 'c1', 0)).not.toBe(fp);
  });

  it('has a fixed value for a fixed input (SHA-256 of the documented encoding)', async () => {
    const { createHash } = await import('node:crypto');
    const k = new Uint8Array(32).fill(0xab);
    const input = Buffer.concat([
      Buffer.from('latchkey.v1.fingerprint'),
      Buffer.from([0, 0, 0, 3]),
      Buffer.from('abc'),
      Buffer.from([0, 0, 0, 7]),
      Buffer.from([0, 0, 0, 32]),
      Buffer.from(k),
    ]);
    const digest = createHash('sha256').update(input).digest('hex').slice(0, 32).toUpperCase();
    expect(keyFingerprint(k, 'abc', 7)).toBe(digest.match(/.{4}/g)!.join(' '));
  });

  it('rejects misuse', () => {
    expect(() => keyFingerprint(new Uint8Array(16), 'c', 0)).toThrow(RangeError);
    expect(() => keyFingerprint(key, 'c', -1)).toThrow(RangeError);
    expect(() => keyFingerprint(key, 1 as unknown as string, 0)).toThrow(TypeError);
  });
});
