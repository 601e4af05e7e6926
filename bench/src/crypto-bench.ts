/**
 * Crypto benchmark: envelope seal+open per second (what a client does per message: AES-256-GCM
 * plus the sender's Ed25519 signature and the receiver's certificate and signature checks) for
 * 200 B and 4 KiB messages, next to raw AES-256-GCM encrypt+decrypt of the same plaintext with
 * node:crypto and with WebCrypto, the AES-GCM step of the envelope alone (@latchkey/crypto/aead,
 * both backends) and Ed25519 in noble versus node:crypto.
 */
import {
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import { aesGcmDecrypt, aesGcmEncrypt, setAeadBackend } from '@latchkey/crypto/aead';
import { randomBytes } from '@latchkey/crypto/random';
import { generateSigningKeyPair, sign, verify } from '@latchkey/crypto/sign';
import {
  makeParticipant,
  makeServiceKey,
  messageText,
  openText,
  sealText,
} from './load/fixtures.ts';

export interface CryptoResult {
  size: number;
  /** Envelope seal + open (incl. certificate and signature checks) per second. */
  envelopeSealOpen: number;
  /** The envelope's AES-GCM step alone (@latchkey/crypto/aead, WebCrypto backend), enc+dec/s. */
  aeadWebcrypto: number;
  /** Same with the noble backend (the portable fallback). */
  aeadNoble: number;
  /** Raw node:crypto AES-256-GCM encrypt + decrypt per second. */
  nodeCrypto: number;
  /** Raw WebCrypto AES-GCM encrypt + decrypt per second. */
  webCrypto: number;
}

export interface SignResult {
  nobleSign: number;
  nobleVerify: number;
  nodeSign: number;
  nodeVerify: number;
}

/** Runs `op` repeatedly for `ms` and returns operations per second. */
async function rate(ms: number, op: () => unknown): Promise<number> {
  for (let i = 0; i < 20; i++) await op(); // warm-up, JIT
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < 10; i++) await op();
    n += 10;
    t = performance.now();
  }
  return Math.round((n * 1000) / (t - t0));
}

export async function cryptoBench(size: number, ms: number): Promise<CryptoResult> {
  const service = makeServiceKey();
  const p = makeParticipant(service, 'bench-contact', 'visitor-1', 'visitor');
  const key = randomBytes(32);
  const text = messageText(size);
  const plaintext = Buffer.from(JSON.stringify({ type: 'text', text }));
  const aad = randomBytes(96);
  const nonce = randomBytes(12);

  const envelopeSealOpen = await rate(ms, async () =>
    openText(await sealText(p, key, text), key, service.publicKey),
  );

  setAeadBackend('webcrypto');
  const aeadWebcrypto = await rate(ms, async () =>
    aesGcmDecrypt(key, nonce, await aesGcmEncrypt(key, nonce, plaintext, aad), aad),
  );
  setAeadBackend('noble');
  const aeadNoble = await rate(ms, async () =>
    aesGcmDecrypt(key, nonce, await aesGcmEncrypt(key, nonce, plaintext, aad), aad),
  );
  setAeadBackend('auto');

  const nodeCrypto = await rate(ms, () => {
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    const tag = c.getAuthTag();
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(aad);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(ct), d.final()]);
  });

  const ck = await crypto.subtle.importKey('raw', new Uint8Array(key), { name: 'AES-GCM' }, false, [
    'encrypt',
    'decrypt',
  ]);
  const params = {
    name: 'AES-GCM',
    iv: new Uint8Array(nonce),
    additionalData: new Uint8Array(aad),
  } as const;
  const webCrypto = await rate(ms, async () =>
    crypto.subtle.decrypt(params, ck, await crypto.subtle.encrypt(params, ck, plaintext)),
  );
  return { size, envelopeSealOpen, aeadWebcrypto, aeadNoble, nodeCrypto, webCrypto };
}

export async function signBench(ms: number): Promise<SignResult> {
  const msg = randomBytes(300);
  const kp = generateSigningKeyPair();
  const sig = sign(kp.secretKey, msg);
  const nk = generateKeyPairSync('ed25519');
  const nsig = nodeSign(null, msg, nk.privateKey);
  return {
    nobleSign: await rate(ms, () => sign(kp.secretKey, msg)),
    nobleVerify: await rate(ms, () => verify(kp.publicKey, msg, sig)),
    nodeSign: await rate(ms, () => nodeSign(null, msg, nk.privateKey)),
    nodeVerify: await rate(ms, () => nodeVerify(null, msg, nk.publicKey, nsig)),
  };
}
