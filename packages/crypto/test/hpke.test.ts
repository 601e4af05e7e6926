import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lengthPrefixed, lengthPrefixedString } from '../src/_encoding.ts';
import { concatBytes } from '../src/codec.ts';
import {
  AuthenticationError,
  generateHpkeKeyPair,
  generateRecipientKeyPair,
  HPKE_X25519_SHA256_AES256GCM,
  HPKE_X25519_SHA256_CHACHA20POLY1305,
  HPKE_XWING_SHA256_AES256GCM,
  KEY_DELIVERY_INFO,
  openFromSender,
  sealToRecipient,
  setupAuthPskR,
  setupAuthPskS,
  setupAuthR,
  setupAuthS,
  setupBaseR,
  setupBaseS,
  setupPskR,
  setupPskS,
} from '../src/hpke.ts';
import type { KeyDeliverySuite } from '../src/hpke.ts';

const SUITES = ['x25519', 'xwing'] as const satisfies readonly KeyDeliverySuite[];
const SIZES = { x25519: { pk: 32, enc: 32 }, xwing: { pk: 1216, enc: 1120 } } as const;
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const info = utf8('contact c_01HZX3 epoch 2 participant p_7');
const aad = utf8('delivery 42');
const contentKey = new Uint8Array(32).map((_, i) => i);

/** One recipient key pair per suite, reused: X-Wing key generation is the slow part. */
const recipients = {
  x25519: generateRecipientKeyPair('x25519'),
  xwing: generateRecipientKeyPair('xwing'),
};

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  const i = bit >> 3;
  out[i] = (out[i] ?? 0) ^ (1 << (bit & 7));
  return out;
}

describe.each(SUITES)('key delivery, suite %s', (suite) => {
  const { secretKey, publicKey } = recipients[suite];
  const seal = (plaintext = contentKey) =>
    sealToRecipient({ suite, recipientPublicKey: publicKey, info, aad, plaintext });
  const open = (
    over: Partial<{
      enc: Uint8Array;
      ciphertext: Uint8Array;
      info: Uint8Array;
      aad: Uint8Array;
      recipientSecretKey: Uint8Array;
    }>,
    sealed = seal(),
  ) =>
    openFromSender({
      suite,
      recipientSecretKey: over.recipientSecretKey ?? secretKey,
      enc: over.enc ?? sealed.enc,
      info: over.info ?? info,
      aad: over.aad ?? aad,
      ciphertext: over.ciphertext ?? sealed.ciphertext,
    });

  it('key pair sizes: secret key 32 bytes, public key as the KEM says', () => {
    expect(secretKey).toHaveLength(32);
    expect(publicKey).toHaveLength(SIZES[suite].pk);
  });

  it('round-trips a content key; enc has the KEM size, ciphertext is 16 bytes longer; fresh enc each time', () => {
    const sealed = seal();
    expect(sealed.enc).toHaveLength(SIZES[suite].enc);
    expect(sealed.ciphertext).toHaveLength(48);
    expect(open({}, sealed)).toEqual(contentKey);
    const again = seal();
    expect(again.enc).not.toEqual(sealed.enc);
    expect(again.ciphertext).not.toEqual(sealed.ciphertext);
  });

  it('aad is optional (empty) and must match', () => {
    const sealed = sealToRecipient({
      suite,
      recipientPublicKey: publicKey,
      info,
      plaintext: contentKey,
    });
    expect(openFromSender({ suite, recipientSecretKey: secretKey, info, ...sealed })).toEqual(
      contentKey,
    );
    expect(() => open({}, sealed)).toThrow(AuthenticationError);
  });

  it('a tampered enc, ciphertext, aad or info, or another recipient key, fails to authenticate', () => {
    const sealed = seal();
    expect(() => open({ enc: flipBit(sealed.enc, 0) }, sealed)).toThrow(AuthenticationError);
    expect(() => open({ enc: flipBit(sealed.enc, sealed.enc.length * 8 - 1) }, sealed)).toThrow(
      AuthenticationError,
    );
    expect(() => open({ ciphertext: flipBit(sealed.ciphertext, 3) }, sealed)).toThrow(
      AuthenticationError,
    );
    expect(() => open({ ciphertext: sealed.ciphertext.subarray(0, 47) }, sealed)).toThrow(
      AuthenticationError,
    );
    expect(() => open({ ciphertext: new Uint8Array(5) }, sealed)).toThrow(AuthenticationError);
    expect(() => open({ aad: utf8('delivery 43') }, sealed)).toThrow(AuthenticationError);
    expect(() => open({ info: utf8('contact c_01HZX3 epoch 3 participant p_7') }, sealed)).toThrow(
      AuthenticationError,
    );
    const other = generateRecipientKeyPair(suite);
    expect(() => open({ recipientSecretKey: other.secretKey }, sealed)).toThrow(
      AuthenticationError,
    );
  });

  it("binds the suite: an 'x25519' delivery does not open as 'xwing' or the other way round", () => {
    const sealed = seal();
    const otherSuite = suite === 'x25519' ? 'xwing' : 'x25519';
    expect(() =>
      openFromSender({
        suite: otherSuite,
        recipientSecretKey: recipients[otherSuite].secretKey,
        info,
        aad,
        ...sealed,
      }),
    ).toThrow(RangeError); // enc has the other KEM's size
  });

  it('rejects misuse with TypeError / RangeError', () => {
    const base = { suite, recipientPublicKey: publicKey, info, plaintext: contentKey };
    expect(() => sealToRecipient(null as never)).toThrow(TypeError);
    expect(() => sealToRecipient({ ...base, suite: 'p256' as never })).toThrow(RangeError);
    expect(() => sealToRecipient({ ...base, suite: 7 as never })).toThrow(TypeError);
    expect(() => sealToRecipient({ ...base, recipientPublicKey: 'pk' as never })).toThrow(
      TypeError,
    );
    expect(() => sealToRecipient({ ...base, recipientPublicKey: publicKey.subarray(1) })).toThrow(
      RangeError,
    );
    expect(() => sealToRecipient({ ...base, info: 'ctx' as never })).toThrow(TypeError);
    expect(() => sealToRecipient({ ...base, aad: [1] as never })).toThrow(TypeError);
    expect(() => sealToRecipient({ ...base, plaintext: undefined as never })).toThrow(TypeError);
    const sealed = seal();
    const o = { suite, recipientSecretKey: secretKey, info, aad, ...sealed };
    expect(() => openFromSender({ ...o, enc: sealed.enc.subarray(1) })).toThrow(RangeError);
    expect(() => openFromSender({ ...o, recipientSecretKey: new Uint8Array(31) })).toThrow(
      RangeError,
    );
    expect(() => openFromSender({ ...o, ciphertext: 'x' as never })).toThrow(TypeError);
    expect(() => generateRecipientKeyPair('rsa' as never)).toThrow(RangeError);
  });

  it('property: any plaintext, info and aad round-trip', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 256 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.uint8Array({ maxLength: 64 }),
        (plaintext, inf, ad) => {
          const sealed = sealToRecipient({
            suite,
            recipientPublicKey: publicKey,
            info: inf,
            aad: ad,
            plaintext,
          });
          expect(sealed.ciphertext).toHaveLength(plaintext.length + 16);
          const opened = openFromSender({
            suite,
            recipientSecretKey: secretKey,
            info: inf,
            aad: ad,
            ...sealed,
          });
          expect(opened).toEqual(plaintext);
        },
      ),
      { numRuns: suite === 'xwing' ? 40 : 100 },
    );
  });

  it('property: a one-bit change anywhere in enc, ciphertext, aad or info fails', () => {
    const sealed = seal();
    const fields = { enc: sealed.enc, ciphertext: sealed.ciphertext, aad, info };
    const names = Object.keys(fields) as (keyof typeof fields)[];
    fc.assert(
      fc.property(fc.constantFrom(...names), fc.nat(), (name, n) => {
        const value = fields[name];
        const changed = { ...fields, [name]: flipBit(value, n % (value.length * 8)) };
        expect(() => open(changed, sealed)).toThrow(AuthenticationError);
      }),
      { numRuns: suite === 'xwing' ? 80 : 200 },
    );
  });
});

describe('key delivery construction', () => {
  it("is SealBase with info = len || 'latchkey.v1.key-delivery' || len || info", () => {
    const { secretKey, publicKey } = recipients.x25519;
    const sealed = sealToRecipient({
      suite: 'x25519',
      recipientPublicKey: publicKey,
      info,
      aad,
      plaintext: contentKey,
    });
    const hpkeInfo = concatBytes(lengthPrefixedString(KEY_DELIVERY_INFO), lengthPrefixed(info));
    const ctx = setupBaseR(HPKE_X25519_SHA256_AES256GCM, sealed.enc, secretKey, hpkeInfo);
    expect(ctx.open(sealed.ciphertext, aad)).toEqual(contentKey);
    expect(KEY_DELIVERY_INFO).toBe('latchkey.v1.key-delivery');
  });

  it('an X25519 recipient key of low order is refused when sealing; such an enc fails to open', () => {
    const lowOrder = new Uint8Array(32); // u = 0
    expect(() =>
      sealToRecipient({
        suite: 'x25519',
        recipientPublicKey: lowOrder,
        info,
        plaintext: contentKey,
      }),
    ).toThrow(RangeError);
    expect(() =>
      openFromSender({
        suite: 'x25519',
        recipientSecretKey: recipients.x25519.secretKey,
        enc: lowOrder,
        info,
        ciphertext: new Uint8Array(48),
      }),
    ).toThrow(AuthenticationError);
  });

  it('an X-Wing public key whose ML-KEM part fails the FIPS 203 modulus check is refused', () => {
    const bad = recipients.xwing.publicKey.slice();
    bad.fill(0xff, 0, 384); // coefficients of 4095 >= q
    expect(() =>
      sealToRecipient({ suite: 'xwing', recipientPublicKey: bad, info, plaintext: contentKey }),
    ).toThrow(RangeError);
  });
});

describe('HPKE contexts (multi-message, export, modes)', () => {
  const suites = [
    ['DHKEM(X25519)/AES-256-GCM', HPKE_X25519_SHA256_AES256GCM],
    ['DHKEM(X25519)/ChaCha20Poly1305', HPKE_X25519_SHA256_CHACHA20POLY1305],
    ['X-Wing/AES-256-GCM', HPKE_XWING_SHA256_AES256GCM],
  ] as const;
  const psk = new Uint8Array(32).fill(7);
  const pskId = utf8('psk-1');

  for (const [name, suite] of suites) {
    it(`${name}: base and psk modes, messages in sequence, same exports on both sides`, () => {
      const r = generateHpkeKeyPair(suite);
      const pairs = [
        [
          setupBaseS(suite, r.publicKey, info),
          (enc: Uint8Array) => setupBaseR(suite, enc, r.secretKey, info),
        ],
        [
          setupPskS(suite, r.publicKey, info, psk, pskId),
          (enc: Uint8Array) => setupPskR(suite, enc, r.secretKey, info, psk, pskId),
        ],
      ] as const;
      for (const [{ enc, context: s }, makeR] of pairs) {
        const rc = makeR(enc);
        const c0 = s.seal(utf8('zero'), aad);
        const c1 = s.seal(utf8('one'));
        expect(c0).not.toEqual(s.seal(utf8('zero'), aad)); // seq 2: a different nonce
        expect(() => rc.open(c1)).toThrow(AuthenticationError);
        expect(rc.open(c0, aad)).toEqual(utf8('zero'));
        expect(rc.open(c1)).toEqual(utf8('one'));
        expect(rc.export(utf8('x'), 42)).toEqual(s.export(utf8('x'), 42));
        expect(rc.export(utf8('x'), 32)).not.toEqual(s.export(utf8('y'), 32));
        expect(() => s.export(utf8('x'), 255 * 32 + 1)).toThrow(RangeError);
      }
      // A psk delivery does not open in base mode, nor with another psk.
      const { enc, context } = setupPskS(suite, r.publicKey, info, psk, pskId);
      const ct = context.seal(contentKey);
      expect(() => setupBaseR(suite, enc, r.secretKey, info).open(ct)).toThrow(AuthenticationError);
      const otherPsk = new Uint8Array(32).fill(8);
      expect(() => setupPskR(suite, enc, r.secretKey, info, otherPsk, pskId).open(ct)).toThrow(
        AuthenticationError,
      );
    });
  }

  it('DHKEM auth and auth_psk modes authenticate the sender key', () => {
    const suite = HPKE_X25519_SHA256_AES256GCM;
    const r = generateHpkeKeyPair(suite);
    const s = generateHpkeKeyPair(suite);
    const mallory = generateHpkeKeyPair(suite);
    const a = setupAuthS(suite, r.publicKey, info, s.secretKey);
    const ct = a.context.seal(contentKey);
    expect(setupAuthR(suite, a.enc, r.secretKey, info, s.publicKey).open(ct)).toEqual(contentKey);
    expect(() => setupAuthR(suite, a.enc, r.secretKey, info, mallory.publicKey).open(ct)).toThrow(
      AuthenticationError,
    );
    const ap = setupAuthPskS(suite, r.publicKey, info, psk, pskId, s.secretKey);
    const ct2 = ap.context.seal(contentKey);
    expect(
      setupAuthPskR(suite, ap.enc, r.secretKey, info, psk, pskId, s.publicKey).open(ct2),
    ).toEqual(contentKey);
  });

  it('misuse: auth modes with X-Wing, bad PSK inputs, unknown ids', () => {
    const x = generateHpkeKeyPair(HPKE_XWING_SHA256_AES256GCM);
    expect(() => setupAuthS(HPKE_XWING_SHA256_AES256GCM, x.publicKey, info, x.secretKey)).toThrow(
      RangeError,
    );
    const suite = HPKE_X25519_SHA256_AES256GCM;
    const r = generateHpkeKeyPair(suite);
    expect(() => setupPskS(suite, r.publicKey, info, new Uint8Array(16), pskId)).toThrow(
      RangeError,
    );
    expect(() => setupPskS(suite, r.publicKey, info, psk, new Uint8Array(0))).toThrow(RangeError);
    expect(() => setupPskS(suite, r.publicKey, info, new Uint8Array(0), new Uint8Array(0))).toThrow(
      RangeError,
    );
    expect(() => setupBaseS({ ...suite, aeadId: 1 } as never, r.publicKey, info)).toThrow(
      RangeError,
    );
    expect(() => setupBaseS({ ...suite, kdfId: 2 } as never, r.publicKey, info)).toThrow(
      RangeError,
    );
    expect(() => setupBaseS({ ...suite, kemId: 0x10 } as never, r.publicKey, info)).toThrow(
      RangeError,
    );
    expect(() => setupBaseS(undefined as never, r.publicKey, info)).toThrow(TypeError);
    expect(() => setupBaseS(suite, r.publicKey, 'info' as never)).toThrow(TypeError);
  });
});
