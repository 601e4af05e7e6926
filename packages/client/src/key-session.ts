/**
 * The key side of one client session (docs/protocol.md "Key service", "Epoch statement"): its
 * Ed25519 session key and the certificate the key service gives it, the key ring of content keys
 * and epoch statements, and the rules that keep them current: the statement fetched again before
 * a seal once it is older than the allowed age, or when a newer epoch was seen; `rekey` and
 * message-based rotation as hints to ask; every answer checked (statement signature, certificate
 * naming us) before it is used.
 */
import { toBase64Url } from '@latchkey/crypto/codec';
import { keyFingerprint } from '@latchkey/crypto/envelope';
import { generateSigningKeyPair } from '@latchkey/crypto/sign';
import {
  LatchkeyError,
  type CertificateBody,
  type ContactKeyResponse,
  type ErrorCode,
  type Role,
  type SenderCertificate,
} from '@latchkey/protocol';
import { signedBody } from './certificate.ts';
import { KeyReceiver, type KeyDeliveryMode } from './key-delivery.ts';
import { KeyRing } from './key-ring.ts';
import { fetchContactKey, fetchEpochStatement, type FetchLike } from './key-service.ts';

/** A rotation owed by a removal is normally done within milliseconds: ask again this often. */
const OWED_ATTEMPTS = 5;
const OWED_WAIT_MS = 200;
/** Key-service errors after which fetching the current key again may succeed. */
const RETRYABLE_KEY: ReadonlySet<ErrorCode> = new Set([
  'KEY_UNAVAILABLE',
  'UNAVAILABLE',
  'INTERNAL',
  'TIMEOUT',
  'RATE_LIMITED',
]);

export interface Identity {
  contactId: string;
  participantId: string;
  role: Role;
}

export interface KeySessionOptions {
  fetch: FetchLike;
  keysUrl: string;
  token: string;
  identity: Identity;
  serviceKey: Uint8Array;
  keyDelivery: KeyDeliveryMode;
  now(): number;
  /** Longest statement age for a seal (ms). */
  maxAgeMs: number;
  /** The application's message-based rotation rule, overriding the key service's. */
  rotateAfterMessages?: number | undefined;
  /** A new current epoch was adopted (its key is held). */
  onEpoch(e: { epoch: number; fingerprint: string }): void;
  /** A background refresh failed (it is retried when it may succeed). */
  onError(err: LatchkeyError): void;
}

export class KeySession {
  readonly ring: KeyRing;
  readonly #o: KeySessionOptions;
  readonly #signing = generateSigningKeyPair();
  readonly #receiver: KeyReceiver;
  #cert: SenderCertificate | null = null;
  #certBody: CertificateBody | null = null;
  readonly #keyFetches = new Map<number, Promise<Uint8Array>>();
  /** Highest epoch seen on any verified envelope: a newer one than stated means: ask. */
  #maxEpochSeen = 0;
  #rotateAfter: number | undefined;
  readonly #epochStart = new Map<number, number>();
  readonly #rotateAsked = new Set<number>();
  #refreshing: Promise<void> | null = null;
  #refreshTimer: ReturnType<typeof setTimeout> | null = null;
  #announcedEpoch = -1;
  #closed = false;

  /** @throws TypeError on an unknown key delivery mode. */
  constructor(o: KeySessionOptions) {
    this.#o = o;
    this.ring = new KeyRing(o.serviceKey, o.identity.contactId);
    this.#receiver = new KeyReceiver(o.keyDelivery, o.identity.participantId);
  }

  get epoch(): number {
    return this.ring.epoch;
  }
  /** Our certificate and its body, once the key service gave one. */
  get cert(): SenderCertificate | null {
    return this.#cert;
  }
  get certBody(): CertificateBody | null {
    return this.#certBody;
  }
  /** The highest epoch of any verified envelope seen so far. */
  get maxEpochSeen(): number {
    return this.#maxEpochSeen;
  }
  /** The session's signing key (never leaves this client). */
  get signingSecretKey(): Uint8Array {
    return this.#signing.secretKey;
  }

  /** The fingerprint of the current epoch's key. @throws LatchkeyError KEY_UNAVAILABLE */
  fingerprint(): string {
    const key = this.ring.key(this.epoch);
    if (!key) throw new LatchkeyError('KEY_UNAVAILABLE', 'not connected');
    return keyFingerprint(key, this.#o.identity.contactId, this.epoch);
  }

  /** Fetches the current key with a certificate for our session key, and its statement. */
  async fetchCurrent(rotate?: { ifEpoch: number }): Promise<void> {
    const delivery = this.#receiver.request();
    const res = await fetchContactKey(this.#o.fetch, this.#o.keysUrl, this.#o.token, {
      signingKey: toBase64Url(this.#signing.publicKey),
      ...(rotate ? { rotate } : {}),
      ...(delivery ? { delivery } : {}),
    });
    await this.#adopt(res);
  }

  /**
   * Makes sure the next seal uses the epoch the key service states now: a statement at most
   * `maxAgeMs` old, no newer epoch seen on an envelope, the key and a certificate of that epoch.
   * Asks for the statement alone when that suffices.
   * @throws LatchkeyError KEY_UNAVAILABLE (or the key service's code) when it cannot be had.
   */
  async ensureFresh(): Promise<void> {
    const ring = this.ring;
    const current = (): boolean =>
      ring.key(ring.epoch) !== undefined &&
      this.#certBody?.epoch === ring.epoch &&
      ring.epoch >= this.#maxEpochSeen;
    const fresh = (): boolean => ring.isFresh(this.#o.now(), this.#o.maxAgeMs) && current();
    if (fresh() && !ring.rotationOwed()) return;
    if (this.#refreshing) await this.#refreshing;
    if (fresh() && !ring.rotationOwed()) return;
    for (let attempt = 0; ; attempt++) {
      const res = await fetchEpochStatement(this.#o.fetch, this.#o.keysUrl, this.#o.token);
      await ring.adopt(res.statement, this.#o.now());
      if (!current()) await this.fetchCurrent();
      this.#announceEpoch();
      if (!fresh()) throw new LatchkeyError('KEY_UNAVAILABLE', 'no current epoch statement');
      // A removal whose rotation is still owed: the removed member holds the current key.
      if (!ring.rotationOwed()) return;
      if (attempt >= OWED_ATTEMPTS) {
        throw new LatchkeyError('KEY_UNAVAILABLE', 'a removal awaits its key rotation');
      }
      await new Promise((r) => setTimeout(r, OWED_WAIT_MS));
    }
  }

  /**
   * Fetches the current key, certificate and statement in the background (asking for a rotation
   * when `rotate` is given). A failure is reported through `onError` and retried; sends ask
   * again themselves before sealing.
   */
  refresh(rotate?: { ifEpoch: number }): Promise<void> {
    if (this.#refreshing) return this.#refreshing;
    if (this.#closed) return Promise.resolve();
    this.#refreshing = this.fetchCurrent(rotate)
      .catch((err: unknown) => {
        const e =
          err instanceof LatchkeyError
            ? err
            : new LatchkeyError('KEY_UNAVAILABLE', 'key refresh failed', { cause: err });
        this.#o.onError(e);
        if (RETRYABLE_KEY.has(e.code) && !this.#closed && !this.#refreshTimer) {
          this.#refreshTimer = setTimeout(() => {
            this.#refreshTimer = null;
            void this.refresh(rotate);
          }, 1000);
        }
      })
      .finally(() => {
        this.#refreshing = null;
      });
    return this.#refreshing;
  }

  /** Whatever changed meanwhile is asked for before the next seal (after a reconnect). */
  expire(): void {
    this.ring.expire();
  }

  /**
   * Notes a verified envelope: a newer epoch than stated makes it ask the key service (the
   * envelope alone proves nothing); past the message-based rule, it asks once for a rotation.
   */
  opened(epoch: number, seq: number): void {
    if (epoch > this.#maxEpochSeen) {
      this.#maxEpochSeen = epoch;
      if (epoch > this.epoch) void this.refresh();
    }
    const start = this.#epochStart.get(epoch);
    if (start === undefined || seq < start) this.#epochStart.set(epoch, seq);
    const limit = this.#rotateAfter;
    const cur = this.epoch;
    const first = this.#epochStart.get(cur);
    if (limit === undefined || first === undefined || this.#rotateAsked.has(cur)) return;
    if (seq - first + 1 >= limit) {
      this.#rotateAsked.add(cur);
      void this.refresh({ ifEpoch: cur });
    }
  }

  /** The content key of `epoch`, fetched once when not held. */
  keyFor(epoch: number): Promise<Uint8Array> {
    const have = this.ring.key(epoch);
    if (have) return Promise.resolve(have);
    let p = this.#keyFetches.get(epoch);
    if (!p) {
      const delivery = this.#receiver.request();
      p = fetchContactKey(this.#o.fetch, this.#o.keysUrl, this.#o.token, {
        epoch,
        ...(delivery ? { delivery } : {}),
      }).then(async (r) => {
        await this.#adopt(r);
        const key = this.ring.key(r.epoch);
        if (!key) throw new LatchkeyError('KEY_UNAVAILABLE', 'no key');
        return key;
      });
      this.#keyFetches.set(epoch, p);
      p.catch(() => this.#keyFetches.delete(epoch));
    }
    return p;
  }

  close(): void {
    this.#closed = true;
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
  }

  /**
   * Adopts a key-service answer: the key of its epoch, its statement (verified, never going
   * backwards) and, when it carries one, our new certificate (verified as ours).
   * @throws LatchkeyError INTEGRITY when the statement or certificate does not verify.
   */
  async #adopt(res: ContactKeyResponse): Promise<void> {
    this.ring.setKey(res.epoch, this.#receiver.open(res));
    await this.ring.adopt(res.statement, this.#o.now());
    this.#rotateAfter = this.#o.rotateAfterMessages ?? res.rotateAfterMessages;
    if (res.certificate) await this.#adoptCertificate(res.certificate);
    this.#announceEpoch();
  }

  /** Checks that a certificate is ours (contact, participant, role, session key) before using it. */
  async #adoptCertificate(cert: SenderCertificate): Promise<void> {
    const id = this.#o.identity;
    let body: CertificateBody;
    try {
      body = await signedBody(cert, this.#o.serviceKey);
    } catch {
      throw new LatchkeyError('INTEGRITY', 'the key service certificate does not verify');
    }
    if (body.contactId !== id.contactId || body.participantId !== id.participantId) {
      throw new LatchkeyError('INTEGRITY', 'the certificate names another contact or participant');
    }
    if (body.role !== id.role || body.publicKey !== toBase64Url(this.#signing.publicKey)) {
      throw new LatchkeyError('INTEGRITY', 'the certificate names another role or session key');
    }
    if (this.#certBody === null || body.epoch >= this.#certBody.epoch) {
      this.#cert = cert;
      this.#certBody = body;
    }
  }

  /** Announces each newly adopted epoch whose key is held, once. */
  #announceEpoch(): void {
    const epoch = this.epoch;
    if (epoch === this.#announcedEpoch || !this.ring.key(epoch)) return;
    this.#announcedEpoch = epoch;
    this.#o.onEpoch({ epoch, fingerprint: this.fingerprint() });
  }
}
