/**
 * X-Wing (draft-connolly-cfrg-xwing-kem-10) against its published test vector (Appendix C,
 * stored in test/vectors/xwing-draft10.json, source in test/README.md): through the HPKE KEM
 * wrapper, and through HPKE setup with the vector's fixed encapsulation randomness.
 */
import { readFileSync } from 'node:fs';
import { shake256 } from '@noble/hashes/sha3.js';
import { describe, expect, it } from 'vitest';
import { AES_256_GCM } from '../src/_hpke-aead.ts';
import { hpkeKem, KEM_XWING, xwingKeyPairFromSeed } from '../src/_hpke-kem.ts';
import { keySchedule, resolveSuite, setupRecipient, setupSender } from '../src/_hpke-context.ts';
import { HPKE_XWING_SHA256_AES256GCM, deriveHpkeKeyPair } from '../src/hpke.ts';
import { hex, toHex } from './_hex.ts';

interface XWingVector {
  name: string;
  seed: string;
  sk: string;
  pk: string;
  eseed: string;
  ct: string;
  ss: string;
}

const { tests } = JSON.parse(
  readFileSync(new URL('./vectors/xwing-draft10.json', import.meta.url), 'utf8'),
) as { source: string; tests: XWingVector[] };

const kem = hpkeKem(KEM_XWING);
const suite = HPKE_XWING_SHA256_AES256GCM;

describe('X-Wing, draft-connolly-cfrg-xwing-kem-10 Appendix C', () => {
  it('has a vector with the draft-10 sizes (Npk 1216, Nenc 1120, Nsk 32)', () => {
    expect(tests.length).toBeGreaterThan(0);
    expect([kem.nPk, kem.nEnc, kem.nSk, kem.nSecret]).toEqual([1216, 1120, 32, 32]);
    for (const t of tests) {
      expect(hex(t.pk)).toHaveLength(kem.nPk);
      expect(hex(t.ct)).toHaveLength(kem.nEnc);
      expect(hex(t.sk)).toHaveLength(kem.nSk);
      expect(hex(t.eseed)).toHaveLength(64);
    }
  });

  for (const t of tests) {
    it(`${t.name}: GenerateKeyPairDerand(seed) gives sk and pk`, () => {
      const { secretKey, publicKey } = xwingKeyPairFromSeed(hex(t.seed));
      expect(toHex(secretKey)).toBe(t.sk);
      expect(toHex(publicKey)).toBe(t.pk);
    });

    it(`${t.name}: EncapsulateDerand(pk, eseed) gives ct and ss; Decapsulate(ct, sk) gives ss`, () => {
      const { enc, sharedSecret } = kem.encap(hex(t.pk), hex(t.eseed));
      expect(toHex(enc)).toBe(t.ct);
      expect(toHex(sharedSecret)).toBe(t.ss);
      expect(toHex(kem.decap(hex(t.ct), hex(t.sk)))).toBe(t.ss);
    });

    it(`${t.name}: HPKE SetupBaseS with that randomness sends ct as enc and keys the AEAD from ss`, () => {
      const info = new TextEncoder().encode('xwing vector');
      const sender = setupSender(suite, 0, hex(t.pk), info, { ikmE: hex(t.eseed) });
      expect(toHex(sender.enc)).toBe(t.ct);
      const pt = new TextEncoder().encode('content key');
      const ct = sender.context.seal(pt);
      const recipient = setupRecipient(suite, 0, hex(t.ct), hex(t.sk), info);
      expect(recipient.open(ct)).toEqual(pt);
      // Message 0 is AES-256-GCM under the key and base_nonce that the RFC 9180 key schedule
      // (suite_id "HPKE" 0x647a 0x0001 0x0002) derives from the vector's ss.
      const ks = keySchedule(resolveSuite(suite), 0, hex(t.ss), info);
      expect(toHex(AES_256_GCM.seal(ks.key, ks.baseNonce, new Uint8Array(0), pt))).toBe(toHex(ct));
      expect(recipient.export(new Uint8Array(0), 32)).toEqual(
        sender.context.export(new Uint8Array(0), 32),
      );
    });
  }

  it('DeriveKeyPair(ikm) is GenerateKeyPairDerand(SHAKE256(ikm, 32)) (draft-10 §5.6)', () => {
    const ikm = hex(tests[0]?.eseed ?? '');
    const derived = deriveHpkeKeyPair(suite, ikm);
    const expected = xwingKeyPairFromSeed(shake256(ikm, { dkLen: 32 }));
    expect(derived).toEqual(expected);
    expect(() => deriveHpkeKeyPair(suite, new Uint8Array(31))).toThrow(RangeError);
  });
});
