/**
 * RFC 9180 test vectors (the CFRG draft's final "HPKE-v1" test-vectors.json) for
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM and ChaCha20-Poly1305 in all four modes,
 * read at run time from the shared folder (provenance in its SOURCES.md, see test/README.md).
 *
 * For every entry: DeriveKeyPair of the ephemeral, recipient and sender keys, Encap/AuthEncap with
 * the fixed ephemeral, Decap/AuthDecap, every KeySchedule output, all 257 encryptions sealed by
 * the sender and opened by the recipient in sequence, and every export on both sides.
 */
import { expect, it } from 'vitest';
import { hpkeKem } from '../src/_hpke-kem.ts';
import { keySchedule, resolveSuite, setupRecipient, setupSender } from '../src/_hpke-context.ts';
import type { HpkeMode, HpkeSuite } from '../src/_hpke-context.ts';
import { AuthenticationError } from '../src/_errors.ts';
import { hex, toHex } from './_hex.ts';
import { describeWithSharedVectors, readSharedVectors } from './_shared-vectors.ts';

const FILE = 'hpke_rfc9180_x25519_hkdfsha256_aes256gcm_chacha20poly1305.json';

interface HpkeVector {
  mode: HpkeMode;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  info: string;
  ikmR: string;
  ikmE: string;
  ikmS?: string;
  skRm: string;
  skEm: string;
  skSm?: string;
  pkRm: string;
  pkEm: string;
  pkSm?: string;
  psk?: string;
  psk_id?: string;
  enc: string;
  shared_secret: string;
  key_schedule_context: string;
  secret: string;
  key: string;
  base_nonce: string;
  exporter_secret: string;
  encryptions: { aad: string; ct: string; nonce: string; pt: string }[];
  exports: { exporter_context: string; L: number; exported_value: string }[];
}

const MODE_NAMES = ['base', 'psk', 'auth', 'auth_psk'] as const;
const AEAD_NAMES: Record<number, string> = { 2: 'AES-256-GCM', 3: 'ChaCha20Poly1305' };

function need(value: string | undefined, name: string): Uint8Array {
  if (value === undefined) {
    throw new Error(`vector lacks ${name}`);
  }
  return hex(value);
}

describeWithSharedVectors('RFC 9180 test vectors: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256', () => {
  const vectors = readSharedVectors<HpkeVector[]>(FILE);

  it('has 8 entries: 4 modes x {AES-256-GCM, ChaCha20Poly1305}, 257 encryptions and 3 exports each', () => {
    expect(vectors).toHaveLength(8);
    const combos = vectors.map((v) => `${v.kem_id}/${v.kdf_id}/${v.aead_id}/${v.mode}`).sort();
    expect(combos).toEqual([
      '32/1/2/0',
      '32/1/2/1',
      '32/1/2/2',
      '32/1/2/3',
      '32/1/3/0',
      '32/1/3/1',
      '32/1/3/2',
      '32/1/3/3',
    ]);
    for (const v of vectors) {
      expect(v.encryptions).toHaveLength(257);
      expect(v.exports).toHaveLength(3);
    }
  });

  for (const v of vectors) {
    const name = `mode ${v.mode} (${MODE_NAMES[v.mode]}), ${AEAD_NAMES[v.aead_id] ?? v.aead_id}`;
    const suite = { kemId: v.kem_id, kdfId: v.kdf_id, aeadId: v.aead_id } as HpkeSuite;
    const kem = hpkeKem(v.kem_id);
    const hasPsk = v.mode === 1 || v.mode === 3;
    const hasAuth = v.mode === 2 || v.mode === 3;
    const psk = hasPsk ? { psk: need(v.psk, 'psk'), pskId: need(v.psk_id, 'psk_id') } : {};
    const info = hex(v.info);

    it(`${name}: DeriveKeyPair(ikmE), (ikmR)${hasAuth ? ', (ikmS)' : ''}`, () => {
      const e = kem.deriveKeyPair(hex(v.ikmE));
      expect(toHex(e.secretKey)).toBe(v.skEm);
      expect(toHex(e.publicKey)).toBe(v.pkEm);
      const r = kem.deriveKeyPair(hex(v.ikmR));
      expect(toHex(r.secretKey)).toBe(v.skRm);
      expect(toHex(r.publicKey)).toBe(v.pkRm);
      if (hasAuth) {
        const s = kem.deriveKeyPair(need(v.ikmS, 'ikmS'));
        expect(toHex(s.secretKey)).toBe(v.skSm);
        expect(toHex(s.publicKey)).toBe(v.pkSm);
      }
    });

    it(`${name}: ${hasAuth ? 'AuthEncap/AuthDecap' : 'Encap/Decap'} give enc and shared_secret`, () => {
      const encap = hasAuth
        ? kem.authEncap(hex(v.pkRm), need(v.skSm, 'skSm'), hex(v.ikmE))
        : kem.encap(hex(v.pkRm), hex(v.ikmE));
      expect(toHex(encap.enc)).toBe(v.enc);
      expect(toHex(encap.sharedSecret)).toBe(v.shared_secret);
      const decap = hasAuth
        ? kem.authDecap(hex(v.enc), hex(v.skRm), need(v.pkSm, 'pkSm'))
        : kem.decap(hex(v.enc), hex(v.skRm));
      expect(toHex(decap)).toBe(v.shared_secret);
    });

    it(`${name}: KeySchedule gives key_schedule_context, secret, key, base_nonce, exporter_secret`, () => {
      const ks = keySchedule(
        resolveSuite(suite),
        v.mode,
        hex(v.shared_secret),
        info,
        psk.psk,
        psk.pskId,
      );
      expect(toHex(ks.keyScheduleContext)).toBe(v.key_schedule_context);
      expect(toHex(ks.secret)).toBe(v.secret);
      expect(toHex(ks.key)).toBe(v.key);
      expect(toHex(ks.baseNonce)).toBe(v.base_nonce);
      expect(toHex(ks.exporterSecret)).toBe(v.exporter_secret);
    });

    it(`${name}: all 257 encryptions sealed (fixed ephemeral) and opened in sequence`, () => {
      const sender = setupSender(suite, v.mode, hex(v.pkRm), info, {
        ...psk,
        ...(hasAuth ? { senderSecretKey: need(v.skSm, 'skSm') } : {}),
        ikmE: hex(v.ikmE),
      });
      expect(toHex(sender.enc)).toBe(v.enc);
      const recipient = setupRecipient(suite, v.mode, hex(v.enc), hex(v.skRm), info, {
        ...psk,
        ...(hasAuth ? { senderPublicKey: need(v.pkSm, 'pkSm') } : {}),
      });
      const baseNonce = hex(v.base_nonce);
      v.encryptions.forEach((enc, seq) => {
        // ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn), as the vector lists it.
        const nonce = baseNonce.slice();
        nonce[11] = (nonce[11] ?? 0) ^ (seq & 0xff);
        nonce[10] = (nonce[10] ?? 0) ^ (seq >> 8);
        expect(toHex(nonce), `nonce ${seq}`).toBe(enc.nonce);
        expect(sender.context.seq).toBe(seq);
        expect(toHex(sender.context.seal(hex(enc.pt), hex(enc.aad))), `ct ${seq}`).toBe(enc.ct);
        expect(toHex(recipient.open(hex(enc.ct), hex(enc.aad))), `pt ${seq}`).toBe(enc.pt);
      });
      expect(sender.context.seq).toBe(257);
      expect(recipient.seq).toBe(257);
    });

    it(`${name}: a ciphertext replayed out of sequence fails and leaves the sequence as it was`, () => {
      const recipient = setupRecipient(suite, v.mode, hex(v.enc), hex(v.skRm), info, {
        ...psk,
        ...(hasAuth ? { senderPublicKey: need(v.pkSm, 'pkSm') } : {}),
      });
      const [first, second] = v.encryptions;
      if (first === undefined || second === undefined) {
        throw new Error('too few encryptions');
      }
      expect(() => recipient.open(hex(second.ct), hex(second.aad))).toThrow(AuthenticationError);
      expect(recipient.seq).toBe(0);
      expect(toHex(recipient.open(hex(first.ct), hex(first.aad)))).toBe(first.pt);
    });

    it(`${name}: every export, on both sides`, () => {
      const sender = setupSender(suite, v.mode, hex(v.pkRm), info, {
        ...psk,
        ...(hasAuth ? { senderSecretKey: need(v.skSm, 'skSm') } : {}),
        ikmE: hex(v.ikmE),
      });
      const recipient = setupRecipient(suite, v.mode, hex(v.enc), hex(v.skRm), info, {
        ...psk,
        ...(hasAuth ? { senderPublicKey: need(v.pkSm, 'pkSm') } : {}),
      });
      for (const x of v.exports) {
        const ctx = hex(x.exporter_context);
        expect(toHex(sender.context.export(ctx, x.L))).toBe(x.exported_value);
        expect(toHex(recipient.export(ctx, x.L))).toBe(x.exported_value);
      }
    });
  }
});
