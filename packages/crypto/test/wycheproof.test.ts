/**
 * Wycheproof (C2SP/wycheproof, testvectors_v1) vectors for AES-256-GCM, HKDF-SHA256,
 * HMAC-SHA256 and X25519, read at run time from the shared folder.
 */
import { afterEach, expect, it } from 'vitest';
import '../src/_node.ts';
import { AuthenticationError, aesGcmDecrypt, aesGcmEncrypt, setAeadBackend } from '../src/aead.ts';
import type { AeadBackend } from '../src/aead.ts';
import { constantTimeEqual } from '../src/compare.ts';
import { x25519SharedSecret } from '../src/dh.ts';
import { hkdfSha256 } from '../src/kdf.ts';
import { hmacSha256 } from '../src/mac.ts';
import { hex, toHex } from './_hex.ts';
import { describeWithSharedVectors, readSharedVectors } from './_shared-vectors.ts';
import type { WycheproofFile, WycheproofTest } from './_shared-vectors.ts';

interface AeadGroup {
  keySize: number;
  ivSize: number;
  tagSize: number;
  tests: (WycheproofTest & {
    key: string;
    iv: string;
    aad: string;
    msg: string;
    ct: string;
    tag: string;
  })[];
}
interface HkdfGroup {
  tests: (WycheproofTest & {
    ikm: string;
    salt: string;
    info: string;
    size: number;
    okm: string;
  })[];
}
interface MacGroup {
  tagSize: number;
  tests: (WycheproofTest & { key: string; msg: string; tag: string })[];
}
interface XdhGroup {
  curve: string;
  tests: (WycheproofTest & { public: string; private: string; shared: string })[];
}

const label = (t: WycheproofTest): string =>
  `tcId ${t.tcId} ${t.result}${t.comment ? ` (${t.comment})` : ''}`;

describeWithSharedVectors('Wycheproof aes_gcm_test.json: AES-256-GCM, 96-bit IV', () => {
  const file = readSharedVectors<WycheproofFile<AeadGroup>>('aes_gcm_test.json');
  const cases = file.testGroups
    .filter((g) => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128)
    .flatMap((g) => g.tests);

  afterEach(() => setAeadBackend('auto'));

  it('has the expected number of cases (39 valid, 27 invalid)', () => {
    expect(cases.filter((t) => t.result === 'valid')).toHaveLength(39);
    expect(cases.filter((t) => t.result === 'invalid')).toHaveLength(27);
  });

  for (const backend of ['node', 'webcrypto', 'noble'] as const satisfies readonly AeadBackend[]) {
    for (const t of cases) {
      it(`${backend}: ${label(t)}`, async () => {
        setAeadBackend(backend);
        const key = hex(t.key);
        const iv = hex(t.iv);
        const aad = hex(t.aad);
        const sealed = hex(t.ct + t.tag);
        if (t.result === 'valid') {
          expect(toHex(await aesGcmEncrypt(key, iv, hex(t.msg), aad))).toBe(t.ct + t.tag);
          expect(toHex(await aesGcmDecrypt(key, iv, sealed, aad))).toBe(t.msg);
        } else {
          await expect(aesGcmDecrypt(key, iv, sealed, aad)).rejects.toThrow(AuthenticationError);
        }
      });
    }
  }
});

describeWithSharedVectors('Wycheproof hkdf_sha256_test.json', () => {
  const file = readSharedVectors<WycheproofFile<HkdfGroup>>('hkdf_sha256_test.json');
  const cases = file.testGroups.flatMap((g) => g.tests);

  it('has all 86 cases', () => {
    expect(cases).toHaveLength(file.numberOfTests);
  });

  for (const t of cases) {
    it(label(t), () => {
      const derive = (): Uint8Array => hkdfSha256(hex(t.ikm), hex(t.salt), hex(t.info), t.size);
      if (t.result === 'valid') {
        expect(toHex(derive())).toBe(t.okm);
      } else {
        // The invalid cases ask for more than 255 * 32 bytes (RFC 5869 §2.3).
        expect(t.flags).toContain('SizeTooLarge');
        expect(derive).toThrow(RangeError);
      }
    });
  }
});

describeWithSharedVectors('Wycheproof hmac_sha256_test.json', () => {
  const file = readSharedVectors<WycheproofFile<MacGroup>>('hmac_sha256_test.json');
  const cases = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, tagSize: g.tagSize })));

  it('has all 174 cases, some with truncated tags', () => {
    expect(cases).toHaveLength(file.numberOfTests);
    expect(cases.some((t) => t.tagSize < 256)).toBe(true);
  });

  for (const t of cases) {
    it(`${t.tagSize}-bit tag: ${label(t)}`, () => {
      // A truncated tag is the leftmost tagSize bits of the full HMAC (RFC 2104 §5).
      const computed = hmacSha256(hex(t.key), hex(t.msg)).subarray(0, t.tagSize / 8);
      expect(constantTimeEqual(computed, hex(t.tag))).toBe(t.result === 'valid');
    });
  }
});

describeWithSharedVectors('Wycheproof x25519_test.json', () => {
  const file = readSharedVectors<WycheproofFile<XdhGroup>>('x25519_test.json');
  const cases = file.testGroups.filter((g) => g.curve === 'curve25519').flatMap((g) => g.tests);
  const ZERO = '00'.repeat(32);

  it('has all 518 cases, valid or acceptable', () => {
    expect(cases).toHaveLength(file.numberOfTests);
    expect(cases.every((t) => t.result === 'valid' || t.result === 'acceptable')).toBe(true);
  });

  // RFC 7748 §6.1 lets an implementation refuse a low-order public key (all-zero shared secret)
  // and RFC 9180 §7.1.4 requires it; x25519SharedSecret does so with a RangeError. Every other
  // case, including non-canonical public keys, must give exactly the expected shared secret.
  for (const t of cases) {
    it(label(t), () => {
      const compute = (): Uint8Array => x25519SharedSecret(hex(t.private), hex(t.public));
      if (t.shared === ZERO) {
        expect(compute).toThrow(RangeError);
      } else {
        expect(toHex(compute())).toBe(t.shared);
      }
    });
  }
});
