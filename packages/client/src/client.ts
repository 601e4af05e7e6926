/**
 * The Latchkey client (docs/protocol.md): connects to the relay with a participant token,
 * fetches the contact's content key from the key service, seals and sends messages (a send
 * resolves on the relay's ack), opens what arrives, and on reconnect resumes from the last
 * seq it has seen, so that every message is emitted once, in seq order, without gaps.
 * Runs in browsers (global WebSocket and fetch) and in Node (pass `ws` as `WebSocket`).
 */
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@latchkey/crypto/codec';
import { keyFingerprint, openEnvelope, sealEnvelope } from '@latchkey/crypto/envelope';
import { randomBytes } from '@latchkey/crypto/random';
import { generateSigningKeyPair } from '@latchkey/crypto/sign';
import {
  ENVELOPE_ALG,
  ERROR_CODES,
  LIMITS,
  LatchkeyError,
  MessageBody,
  MsgId,
  PROTOCOL_VERSION,
  SENDING_ROLES,
  ServerFrame,
  parseJson,
  type ClientFrame,
  type EnvelopeHeader,
  type ErrorCode,
  type HistoryFrame,
  type Role,
  type SealedEnvelope,
  type SenderCertificate,
  type ServerFrame as ServerFrameT,
  type StoredEnvelope,
} from '@latchkey/protocol';
import { verifyCertificate } from './certificate.ts';
import { KeyReceiver, type KeyDeliveryMode } from './key-delivery.ts';
import { fetchContactKey, fetchServiceKey, type FetchLike } from './key-service.ts';
import { tlsFailure } from './tls-errors.ts';
import { MemoryOutbox, type OutboxStore } from './outbox.ts';

/** The subset of the WHATWG WebSocket that the client uses (browsers and `ws` both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface ClientOptions {
  relayUrl: string;
  keysUrl: string;
  token: string;
  /** WebSocket implementation; defaults to globalThis.WebSocket (pass `ws` in Node 20). */
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
  /** Pinned Ed25519 key of the key service (32 bytes or base64url). Fetched when absent. */
  serviceKey?: Uint8Array | string;
  /** Resume point: messages with seq > since are emitted. Default 0 (the whole history). */
  since?: number;
  /** Subscribe to live delivery (default true). False: only history reads and sends. */
  live?: boolean;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  backoff?: { minMs: number; maxMs: number };
  /** Clock in ms (tests). */
  now?: () => number;
  /**
   * How content keys travel from the key service: sealed with HPKE to a per-session key
   * (`x25519`, the default, or the post-quantum hybrid `xwing`), or `plain` (TLS only).
   */
  keyDelivery?: KeyDeliveryMode;
  /**
   * Ask the key service to rotate once this many messages (counted by seq) were sent under the
   * current epoch. Default: what the key service says (`rotateAfterMessages`), else never.
   */
  rotateAfterMessages?: number;
  /**
   * Where sealed, unacknowledged envelopes wait (default: in memory). With a persistent store
   * (`IndexedDbOutbox` in browsers) `connect` sends what an earlier session left, once, in
   * order, before anything new, and emits each as a `pending` event first.
   */
  outbox?: OutboxStore;
}

/** An own message restored from the outbox store: sealed earlier, not yet acknowledged. */
export interface PendingMessage {
  msgId: string;
  sentAt: number;
  text: string;
}

/** A message of the contact, opened and verified. */
export interface ChatMessage {
  seq: number;
  msgId: string;
  senderId: string;
  senderRole: Role;
  sentAt: number;
  epoch: number;
  text: string;
  /** Sent by this participant. */
  own: boolean;
}

/** A stored message that could not be opened (tampered, forged, or its key is gone). */
export interface FailedMessage {
  seq: number;
  msgId: string;
  senderId: string;
  code: ErrorCode;
}

export type HistoryEntry = ({ ok: true } & ChatMessage) | ({ ok: false } & FailedMessage);

/** Options of one `send`. */
export interface SendOptions {
  /**
   * The message id to seal under (16-64 of `[A-Za-z0-9_-]`), so that a UI can tie the send to
   * its `pending`, `message` and outbox records before the ack. Default: 16 random bytes.
   */
  msgId?: string;
}

export interface SendResult {
  seq: number;
  msgId: string;
  duplicate: boolean;
}

interface Events {
  message: ChatMessage;
  failed: FailedMessage;
  state: ConnectionState;
  error: LatchkeyError;
  pending: PendingMessage;
}
type Listener<T> = (value: T) => void;

interface OutboxEntry {
  envelope: SealedEnvelope;
  text: string;
  /** Transmitted on the current connection and not yet answered. */
  sent: boolean;
  /** Recorded in the outbox store (only then may it leave: a reload cannot lose it). */
  recorded: boolean;
  resolve: (r: SendResult) => void;
  reject: (e: LatchkeyError) => void;
}

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: LatchkeyError) => void;
}

const OPEN = 1;
/** Sends in flight (transmitted, not yet acked) on one connection. */
const SEND_WINDOW = 32;
/** The client's own pace, below the relay's default per-connection limit (100/s, burst 200). */
const SEND_RATE = { perSecond: 80, burst: 160 };
/** Errors after which retrying the same frame cannot succeed. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['RATE_LIMITED', 'UNAVAILABLE', 'INTERNAL', 'TIMEOUT']);
/** Key-service errors after which fetching the current key again may succeed. */
const RETRYABLE_KEY: ReadonlySet<ErrorCode> = new Set(['KEY_UNAVAILABLE', 'UNAVAILABLE', 'INTERNAL', 'TIMEOUT', 'RATE_LIMITED']);
/** Close codes after which reconnecting with the same token cannot succeed. */
const FATAL_CLOSE = new Set<number>([
  ERROR_CODES.AUTH_INVALID.ws,
  ERROR_CODES.UNSUPPORTED_VERSION.ws,
  // removed from the contact (kicked, transferred away), contact expired or full
  ERROR_CODES.FORBIDDEN.ws,
  ERROR_CODES.CONTACT_EXPIRED.ws,
  ERROR_CODES.CONTACT_FULL.ws,
]);

export class LatchkeyClient {
  readonly relayUrl: string;
  readonly keysUrl: string;
  #token: string;
  #opts: ClientOptions;
  #fetch: FetchLike;
  #WS: WebSocketConstructor;
  #now: () => number;

  #state: ConnectionState = 'idle';
  #ws: WebSocketLike | null = null;
  #listeners: { [K in keyof Events]: Set<Listener<Events[K]>> } = {
    message: new Set(),
    failed: new Set(),
    state: new Set(),
    error: new Set(),
    pending: new Set(),
  };

  #identity: { contactId: string; participantId: string; role: Role } | null = null;
  #signing = generateSigningKeyPair();
  #cert: SenderCertificate | null = null;
  #serviceKey: Uint8Array | null = null;
  #keys = new Map<number, Uint8Array>();
  #keyFetches = new Map<number, Promise<Uint8Array>>();
  #receiver: KeyReceiver | null = null;
  #epoch = 0;
  /** Message-based rotation: the service's rule, first seq seen per epoch, epochs already asked for. */
  #rotateAfter: number | undefined;
  #epochStart = new Map<number, number>();
  #rotateAsked = new Set<number>();
  #refreshing: Promise<void> | null = null;
  #refreshTimer: ReturnType<typeof setTimeout> | null = null;

  /** Highest seq emitted so far (messages up to it have all been emitted, in order). */
  #lastSeq: number;
  #buffer = new Map<number, HistoryEntry>();
  #inbox: Promise<void> = Promise.resolve();
  #gapTimer: ReturnType<typeof setTimeout> | null = null;

  #outbox: OutboxEntry[] = [];
  #sealChain: Promise<void> = Promise.resolve();
  #sendTokens = SEND_RATE.burst;
  #sendTokensAt = Date.now();
  #paceTimer: ReturnType<typeof setTimeout> | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #rateBackoff = 0;
  #outboxStore: OutboxStore;
  #requests = new Map<string, Pending<HistoryFrame>>();
  #nextRequest = 1;
  #ready: Pending<void> | null = null;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #lastError: LatchkeyError | null = null;

  constructor(opts: ClientOptions) {
    this.relayUrl = opts.relayUrl;
    this.keysUrl = opts.keysUrl;
    this.#token = opts.token;
    this.#opts = opts;
    this.#lastSeq = opts.since ?? 0;
    const f = opts.fetch ?? (globalThis.fetch as FetchLike | undefined);
    const W = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!f) throw new TypeError('no fetch implementation: pass options.fetch');
    if (!W) throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the ws package)');
    this.#fetch = f;
    this.#WS = W;
    this.#now = opts.now ?? Date.now;
    this.#outboxStore = opts.outbox ?? new MemoryOutbox();
    if (opts.serviceKey !== undefined) {
      this.#serviceKey = typeof opts.serviceKey === 'string' ? fromBase64Url(opts.serviceKey) : opts.serviceKey;
    }
  }

  /** Creates a client and connects it. */
  static async connect(opts: ClientOptions): Promise<LatchkeyClient> {
    const client = new LatchkeyClient(opts);
    await client.connect();
    return client;
  }

  get state(): ConnectionState {
    return this.#state;
  }
  get contactId(): string {
    return this.#need().contactId;
  }
  get participantId(): string {
    return this.#need().participantId;
  }
  get role(): Role {
    return this.#need().role;
  }
  /** Highest seq emitted so far; pass it as `since` to resume in a later session. */
  get lastSeq(): number {
    return this.#lastSeq;
  }
  /** Messages sealed but not yet acknowledged. */
  get pendingSends(): number {
    return this.#outbox.length;
  }

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  /** Fingerprint of the current content key, to compare out of band with the other side. */
  fingerprint(): string {
    const key = this.#keys.get(this.#epoch);
    if (!key) throw new LatchkeyError('KEY_UNAVAILABLE', 'not connected');
    return keyFingerprint(key, this.contactId, this.#epoch);
  }

  /**
   * Fetches keys, opens the socket, authenticates and (unless `live: false`) joins.
   * @throws LatchkeyError AUTH_INVALID / AUTH_EXPIRED / KEY_UNAVAILABLE / UNAVAILABLE
   */
  async connect(): Promise<void> {
    if (this.#state === 'closed') throw new LatchkeyError('UNAVAILABLE', 'client is closed');
    this.#setState('connecting');
    try {
      if (!this.#serviceKey) {
        this.#serviceKey = fromBase64Url((await fetchServiceKey(this.#fetch, this.keysUrl)).publicKey);
      }
      const claims = tokenClaims(this.#token);
      if (!claims) throw new LatchkeyError('AUTH_INVALID', 'invalid token');
      this.#receiver ??= new KeyReceiver(this.#opts.keyDelivery ?? 'x25519', claims.participantId);
      const delivery = this.#receiver.request();
      const res = await fetchContactKey(this.#fetch, this.keysUrl, this.#token, {
        signingKey: toBase64Url(this.#signing.publicKey),
        ...(delivery ? { delivery } : {}),
      });
      this.#keys.set(res.epoch, this.#receiver.open(res));
      this.#epoch = res.currentEpoch;
      this.#rotateAfter = this.#opts.rotateAfterMessages ?? res.rotateAfterMessages;
      this.#cert = res.certificate ?? null;
      await this.#restoreOutbox();
      await this.#openSocket();
    } catch (err) {
      this.#setState('closed');
      this.#ws?.close(1000);
      throw err instanceof LatchkeyError ? err : new LatchkeyError('UNAVAILABLE', 'connect failed', { cause: err });
    }
  }

  /**
   * Seals `text` and sends it. Resolves once the relay has stored it (its ack); a message
   * sent while disconnected waits in the outbox and goes out once, in order, on reconnect.
   * @throws LatchkeyError FORBIDDEN (role may not send), TOO_LARGE, BAD_REQUEST (empty text or
   *   malformed `msgId`), CONFLICT (`msgId` already waiting in the outbox), or the relay's code.
   */
  async send(text: string, opts: SendOptions = {}): Promise<SendResult> {
    const id = this.#need();
    if (opts.msgId !== undefined && !MsgId.safeParse(opts.msgId).success) throw new LatchkeyError('BAD_REQUEST', 'malformed msgId');
    if (opts.msgId !== undefined && this.#outbox.some((e) => e.envelope.msgId === opts.msgId)) {
      throw new LatchkeyError('CONFLICT', 'msgId already waiting in the outbox');
    }
    if (!SENDING_ROLES.has(id.role)) throw new LatchkeyError('FORBIDDEN', `${id.role} may not send`);
    if (typeof text !== 'string' || text.length === 0) throw new LatchkeyError('BAD_REQUEST', 'empty message');
    const body: MessageBody = { type: 'text', text };
    const plaintext = utf8Encode(JSON.stringify(body));
    if (plaintext.length > LIMITS.maxPlaintextBytes || !MessageBody.safeParse(body).success) {
      throw new LatchkeyError('TOO_LARGE', 'message too large');
    }
    const key = this.#keys.get(this.#epoch);
    if (!key || !this.#cert) throw new LatchkeyError('KEY_UNAVAILABLE', 'no content key');
    const header: EnvelopeHeader = {
      v: 1,
      alg: ENVELOPE_ALG,
      contactId: id.contactId,
      epoch: this.#epoch,
      senderId: id.participantId,
      msgId: opts.msgId ?? toBase64Url(randomBytes(16)),
      sentAt: this.#now(),
    };
    // Sealing is asynchronous: chain it so that messages enter the outbox in call order.
    const sealing = this.#sealChain.then(() => sealEnvelope({ key, header, plaintext, signingKey: this.#signing.secretKey }));
    this.#sealChain = sealing.then(
      () => undefined,
      () => undefined,
    );
    const sealed = await sealing;
    const envelope: SealedEnvelope = {
      ...header,
      nonce: toBase64Url(sealed.nonce),
      ciphertext: toBase64Url(sealed.ciphertext),
      sig: toBase64Url(sealed.sig),
      cert: this.#cert,
    };
    return new Promise<SendResult>((resolve, reject) => {
      const entry: OutboxEntry = { envelope, text, sent: false, recorded: false, resolve, reject };
      this.#outbox.push(entry);
      // Recorded before it leaves, so a reload cannot lose it; a failing store only costs that.
      void this.#outboxStore
        .put(envelope)
        .catch(() => undefined)
        .then(() => {
          entry.recorded = true;
          this.#pump();
        });
    });
  }

  /**
   * Reads the stored history after `since` (all pages), opening each message. Messages that
   * fail to open are returned as `{ ok: false, code: 'DECRYPT_FAILED' }` entries.
   * @throws LatchkeyError UNAVAILABLE when not connected
   */
  async history(since = 0): Promise<HistoryEntry[]> {
    const out: HistoryEntry[] = [];
    let cursor = since;
    for (;;) {
      const page = await this.#request({ since: cursor, limit: LIMITS.maxHistoryPage });
      for (const env of page.envelopes) {
        out.push(await this.#open(env));
        cursor = env.seq;
      }
      if (!page.more || page.envelopes.length === 0) return out;
    }
  }

  /** Closes the connection for good. Unacknowledged sends are rejected. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    if (this.#gapTimer) clearTimeout(this.#gapTimer);
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    if (this.#paceTimer) clearTimeout(this.#paceTimer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#ws?.close(1000);
    this.#ws = null;
    this.#failAll(new LatchkeyError('UNAVAILABLE', 'client closed'));
  }

  // --- internals -------------------------------------------------------------------------

  #need(): { contactId: string; participantId: string; role: Role } {
    if (!this.#identity) throw new LatchkeyError('UNAVAILABLE', 'not connected');
    return this.#identity;
  }

  #emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const l of this.#listeners[event]) {
      try {
        l(value);
      } catch {
        // A listener's bug must not break delivery to the others.
      }
    }
  }

  #setState(s: ConnectionState): void {
    if (this.#state === s) return;
    if (this.#state === 'closed') return;
    this.#state = s;
    this.#emit('state', s);
  }

  #openSocket(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
      this.#lastError = null;
      const ws = new this.#WS(this.relayUrl);
      this.#ws = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'auth', token: this.#token } satisfies ClientFrame));
      };
      ws.onmessage = (ev) => {
        if (this.#ws !== ws) return;
        if (typeof ev.data !== 'string') return;
        let frame: ServerFrameT;
        try {
          frame = parseJson(ServerFrame, ev.data);
        } catch {
          return; // A relay speaking nonsense gets ignored, not trusted.
        }
        this.#onFrame(frame);
      };
      ws.onerror = (ev) => {
        // onclose follows and decides; a TLS failure (Node only) is worth naming.
        const tls = tlsFailure((ev as { error?: unknown } | null)?.error, 'relay');
        if (tls) this.#lastError = tls;
      };
      ws.onclose = (ev) => {
        if (this.#ws !== ws) return;
        this.#ws = null;
        this.#onClose(ev.code);
      };
    });
  }

  #onClose(code: number): void {
    const err = this.#lastError ?? new LatchkeyError('UNAVAILABLE', `connection closed (${code})`);
    for (const [, p] of this.#requests) p.reject(err);
    this.#requests.clear();
    const fatal =
      FATAL_CLOSE.has(code) || err.code === 'AUTH_EXPIRED' || err.code === 'AUTH_INVALID' || err.code === 'TLS_FAILED';
    const ready = this.#ready;
    this.#ready = null;
    if (ready) {
      // The attempt failed before it became ready. connect() reports a first attempt;
      // a reconnect attempt is retried by #scheduleReconnect's catch unless it is fatal.
      ready.reject(err);
      if (fatal && this.#state === 'reconnecting') this.#fatal(err);
      return;
    }
    if (this.#state === 'closed') return;
    if (fatal || this.#opts.reconnect === false) {
      this.#fatal(err);
      return;
    }
    this.#scheduleReconnect();
  }

  #fatal(err: LatchkeyError): void {
    this.#emit('error', err);
    this.#setState('closed');
    this.#failAll(err);
  }

  #failAll(err: LatchkeyError): void {
    const pending = this.#outbox;
    this.#outbox = [];
    for (const e of pending) e.reject(err);
    for (const [, p] of this.#requests) p.reject(err);
    this.#requests.clear();
  }

  #scheduleReconnect(): void {
    this.#setState('reconnecting');
    const { minMs, maxMs } = this.#opts.backoff ?? { minMs: 200, maxMs: 10_000 };
    const base = Math.min(maxMs, minMs * 2 ** this.#attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.#attempt++;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#state === 'closed') return;
      this.#openSocket().catch(() => {
        if (this.#state === 'reconnecting') this.#scheduleReconnect();
      });
    }, delay);
  }

  #transmit(frame: ClientFrame): void {
    const ws = this.#ws;
    if (ws && ws.readyState === OPEN) ws.send(JSON.stringify(frame));
  }

  #onFrame(frame: ServerFrameT): void {
    switch (frame.type) {
      case 'ready': {
        this.#identity = { contactId: frame.contactId, participantId: frame.participantId, role: frame.role };
        if (this.#opts.live === false) this.#becomeReady();
        else this.#transmit({ v: PROTOCOL_VERSION, type: 'join', since: this.#lastSeq });
        return;
      }
      case 'joined':
        this.#becomeReady();
        return;
      case 'deliver':
        this.#enqueue(frame.envelope);
        return;
      case 'ack': {
        const i = this.#outbox.findIndex((e) => e.envelope.msgId === frame.msgId);
        if (i < 0) return;
        const [entry] = this.#outbox.splice(i, 1);
        if (!entry) return;
        void this.#outboxStore.delete(entry.envelope.contactId, entry.envelope.msgId).catch(() => undefined);
        this.#ownStored(entry, frame.seq);
        entry.resolve({ seq: frame.seq, msgId: frame.msgId, duplicate: frame.duplicate });
        this.#rateBackoff = 0;
        this.#pump();
        return;
      }
      case 'history': {
        const p = this.#requests.get(frame.id);
        if (p) {
          this.#requests.delete(frame.id);
          p.resolve(frame);
        }
        return;
      }
      case 'error':
        this.#onError(frame.code, frame.message, frame.ref);
        return;
      case 'pong':
        return;
      case 'rekey':
        // Membership changed and the key was rotated: send under the new epoch from now on.
        void this.#refreshKey();
        return;
    }
  }

  /**
   * Fetches the current content key (asking for a rotation when `rotate` is given) and adopts
   * its epoch for sending, without reconnecting. A failure is reported as an `error` event
   * (KEY_UNAVAILABLE) and retried; sending goes on under the epoch held meanwhile.
   */
  #refreshKey(rotate?: { ifEpoch: number }): Promise<void> {
    if (this.#refreshing) return this.#refreshing;
    const receiver = this.#receiver;
    if (!receiver || this.#state === 'closed') return Promise.resolve();
    const delivery = receiver.request();
    this.#refreshing = fetchContactKey(this.#fetch, this.keysUrl, this.#token, {
      ...(rotate ? { rotate } : {}),
      ...(delivery ? { delivery } : {}),
    })
      .then((res) => {
        this.#keys.set(res.epoch, receiver.open(res));
        if (res.currentEpoch > this.#epoch && this.#keys.has(res.currentEpoch)) this.#epoch = res.currentEpoch;
        this.#rotateAfter = this.#opts.rotateAfterMessages ?? res.rotateAfterMessages;
      })
      .catch((err: unknown) => {
        const e = err instanceof LatchkeyError ? err : new LatchkeyError('KEY_UNAVAILABLE', 'key refresh failed', { cause: err });
        this.#emit('error', e);
        if (RETRYABLE_KEY.has(e.code) && this.#state !== 'closed' && !this.#refreshTimer) {
          this.#refreshTimer = setTimeout(() => {
            this.#refreshTimer = null;
            void this.#refreshKey(rotate);
          }, 1000);
        }
      })
      .finally(() => {
        this.#refreshing = null;
      });
    return this.#refreshing;
  }

  /** Counts messages of the current epoch by seq; past the rule, asks once for a rotation. */
  #countForRotation(epoch: number, seq: number): void {
    if (epoch > this.#epoch && this.#keys.has(epoch)) this.#epoch = epoch; // a member rotated: follow
    const start = this.#epochStart.get(epoch);
    if (start === undefined || seq < start) this.#epochStart.set(epoch, seq);
    const limit = this.#rotateAfter;
    const first = this.#epochStart.get(this.#epoch);
    if (limit === undefined || first === undefined || this.#rotateAsked.has(this.#epoch)) return;
    if (seq - first + 1 >= limit) {
      this.#rotateAsked.add(this.#epoch);
      void this.#refreshKey({ ifEpoch: this.#epoch });
    }
  }

  #onError(code: ErrorCode, message: string, ref: { msgId?: string | undefined; id?: string | undefined } | undefined): void {
    const err = new LatchkeyError(code, message);
    if (ref?.msgId) {
      const i = this.#outbox.findIndex((e) => e.envelope.msgId === ref.msgId);
      const entry = this.#outbox[i];
      if (!entry) return;
      if (RETRYABLE.has(code)) {
        entry.sent = false;
        this.#retryLater();
        return;
      }
      this.#outbox.splice(i, 1);
      void this.#outboxStore.delete(entry.envelope.contactId, entry.envelope.msgId).catch(() => undefined);
      entry.reject(err);
      return;
    }
    if (ref?.id) {
      const p = this.#requests.get(ref.id);
      if (p) {
        this.#requests.delete(ref.id);
        p.reject(err);
      }
      return;
    }
    if (code === 'RATE_LIMITED') {
      // The relay drops a frame over its rate before reading it, so the answer names no
      // message: send again whatever is unanswered (the relay dedups by msgId), a bit later.
      for (const e of this.#outbox) e.sent = false;
      this.#retryLater();
      return;
    }
    this.#lastError = err;
    this.#emit('error', err);
  }

  /** Retries unanswered sends after a growing pause (reset by the next ack). */
  #retryLater(): void {
    if (this.#retryTimer) return;
    const delay = Math.min(5000, 250 * 2 ** this.#rateBackoff);
    this.#rateBackoff = Math.min(this.#rateBackoff + 1, 5);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#pump();
    }, delay);
  }

  /**
   * Transmits queued sends in order: at most SEND_WINDOW in flight, at the client's own pace
   * (a token bucket of SEND_RATE), so a fast sender does not run into the relay's rate limit.
   */
  #pump(): void {
    if (this.#state !== 'connected' || this.#retryTimer) return;
    let inflight = 0;
    for (const e of this.#outbox) if (e.sent) inflight++;
    const now = Date.now();
    this.#sendTokens = Math.min(SEND_RATE.burst, this.#sendTokens + ((now - this.#sendTokensAt) * SEND_RATE.perSecond) / 1000);
    this.#sendTokensAt = now;
    for (const e of this.#outbox) {
      if (inflight >= SEND_WINDOW) return;
      if (e.sent) continue;
      if (!e.recorded) return; // keeps the order: later ones wait for this one
      if (this.#sendTokens < 1) {
        if (!this.#paceTimer) {
          this.#paceTimer = setTimeout(() => {
            this.#paceTimer = null;
            this.#pump();
          }, Math.ceil(1000 / SEND_RATE.perSecond));
        }
        return;
      }
      this.#sendTokens -= 1;
      e.sent = true;
      inflight++;
      this.#transmit({ v: PROTOCOL_VERSION, type: 'send', envelope: e.envelope });
    }
  }

  /**
   * Loads what an earlier session left in the outbox store for this contact and participant,
   * opens each envelope locally (it must verify as our own), emits it as `pending`, and queues
   * it ahead of anything new. An envelope that no longer opens is dropped from the store.
   */
  async #restoreOutbox(): Promise<void> {
    const claims = tokenClaims(this.#token);
    if (!claims) return;
    let stored: SealedEnvelope[];
    try {
      stored = await this.#outboxStore.load(claims.contactId, claims.participantId);
    } catch {
      return; // storage refused: nothing to restore
    }
    const known = new Set(this.#outbox.map((e) => e.envelope.msgId));
    const restored: OutboxEntry[] = [];
    for (const envelope of stored) {
      if (known.has(envelope.msgId)) continue;
      const text = await this.#openOwn(envelope, claims);
      if (text === null) {
        await this.#outboxStore.delete(envelope.contactId, envelope.msgId).catch(() => undefined);
        continue;
      }
      known.add(envelope.msgId);
      restored.push({ envelope, text, sent: false, recorded: true, resolve: () => undefined, reject: () => undefined });
      this.#emit('pending', { msgId: envelope.msgId, sentAt: envelope.sentAt, text });
    }
    this.#outbox = [...restored, ...this.#outbox];
  }

  /** Opens an own envelope from the outbox store; null when it is not ours or does not open. */
  async #openOwn(env: SealedEnvelope, claims: { contactId: string; participantId: string }): Promise<string | null> {
    if (env.contactId !== claims.contactId || env.senderId !== claims.participantId || !this.#serviceKey) return null;
    try {
      const key = await this.#keyFor(env.epoch);
      const sender = await verifyCertificate(env.cert, this.#serviceKey, env);
      const { nonce, ciphertext, sig, cert: _cert, ...header } = env;
      const plaintext = await openEnvelope({
        key,
        header,
        nonce: fromBase64Url(nonce),
        ciphertext: fromBase64Url(ciphertext),
        sig: fromBase64Url(sig),
        verifyKey: sender.publicKey,
      });
      const body = MessageBody.safeParse(JSON.parse(utf8Decode(plaintext)));
      return body.success ? body.data.text : null;
    } catch {
      return null;
    }
  }

  #becomeReady(): void {
    this.#attempt = 0;
    const ready = this.#ready;
    this.#ready = null;
    this.#setState('connected');
    for (const e of this.#outbox) e.sent = false;
    this.#pump();
    ready?.resolve();
  }

  #request(args: { since: number; limit: number }): Promise<HistoryFrame> {
    if (this.#state !== 'connected') return Promise.reject(new LatchkeyError('UNAVAILABLE', 'not connected'));
    const id = `h${this.#nextRequest++}`;
    return new Promise<HistoryFrame>((resolve, reject) => {
      this.#requests.set(id, { resolve, reject });
      this.#transmit({ v: PROTOCOL_VERSION, type: 'history', id, since: args.since, limit: args.limit });
    });
  }

  /** Own message stored at `seq`: it joins the ordered stream without a round trip. */
  #ownStored(entry: OutboxEntry, seq: number): void {
    if (seq <= this.#lastSeq || this.#buffer.has(seq)) return;
    this.#countForRotation(entry.envelope.epoch, seq);
    const id = this.#need();
    this.#buffer.set(seq, {
      ok: true,
      seq,
      msgId: entry.envelope.msgId,
      senderId: entry.envelope.senderId,
      senderRole: id.role,
      sentAt: entry.envelope.sentAt,
      epoch: entry.envelope.epoch,
      text: entry.text,
      own: true,
    });
    this.#inbox = this.#inbox.then(() => this.#drain());
  }

  #enqueue(env: StoredEnvelope): void {
    this.#inbox = this.#inbox.then(async () => {
      if (env.seq <= this.#lastSeq || this.#buffer.has(env.seq)) return;
      this.#buffer.set(env.seq, await this.#open(env));
      await this.#drain();
    });
  }

  /** Emits buffered entries in seq order; a lasting gap is filled from history. */
  async #drain(): Promise<void> {
    for (;;) {
      const next = this.#buffer.get(this.#lastSeq + 1);
      if (!next) break;
      this.#buffer.delete(next.seq);
      this.#lastSeq = next.seq;
      if (next.ok) {
        const { ok: _ok, ...msg } = next;
        this.#emit('message', msg);
      } else {
        const { ok: _ok, ...failed } = next;
        this.#emit('failed', failed);
      }
    }
    if (this.#buffer.size > 0 && !this.#gapTimer) {
      this.#gapTimer = setTimeout(() => {
        this.#gapTimer = null;
        this.#inbox = this.#inbox.then(() => this.#fillGap());
      }, 300);
    }
  }

  async #fillGap(): Promise<void> {
    if (this.#buffer.size === 0 || this.#state !== 'connected') return;
    try {
      const page = await this.#request({ since: this.#lastSeq, limit: LIMITS.maxHistoryPage });
      for (const env of page.envelopes) {
        if (env.seq > this.#lastSeq && !this.#buffer.has(env.seq)) this.#buffer.set(env.seq, await this.#open(env));
      }
    } catch {
      // Retried on the next drain.
    }
    await this.#drain();
  }

  async #keyFor(epoch: number): Promise<Uint8Array> {
    const have = this.#keys.get(epoch);
    if (have) return have;
    let p = this.#keyFetches.get(epoch);
    if (!p) {
      const receiver = this.#receiver;
      if (!receiver) return Promise.reject(new LatchkeyError('KEY_UNAVAILABLE', 'not connected'));
      const delivery = receiver.request();
      p = fetchContactKey(this.#fetch, this.keysUrl, this.#token, { epoch, ...(delivery ? { delivery } : {}) }).then((r) => {
        const key = receiver.open(r);
        this.#keys.set(r.epoch, key);
        return key;
      });
      this.#keyFetches.set(epoch, p);
      p.catch(() => this.#keyFetches.delete(epoch));
    }
    return p;
  }

  /** Verifies the sender and opens one stored envelope. Never throws for bad content. */
  async #open(env: StoredEnvelope): Promise<HistoryEntry> {
    const failed = (code: ErrorCode): HistoryEntry => ({
      ok: false,
      seq: env.seq,
      msgId: env.msgId,
      senderId: env.senderId,
      code,
    });
    const id = this.#need();
    if (env.contactId !== id.contactId) return failed('DECRYPT_FAILED');
    let key: Uint8Array;
    try {
      key = await this.#keyFor(env.epoch);
    } catch (err) {
      return failed(LatchkeyError.is(err, 'NOT_FOUND') ? 'DECRYPT_FAILED' : 'KEY_UNAVAILABLE');
    }
    try {
      if (!this.#serviceKey) return failed('KEY_UNAVAILABLE');
      const sender = await verifyCertificate(env.cert, this.#serviceKey, env);
      const { nonce, ciphertext, sig, cert: _cert, seq: _seq, ...header } = env;
      const plaintext = await openEnvelope({
        key,
        header,
        nonce: fromBase64Url(nonce),
        ciphertext: fromBase64Url(ciphertext),
        sig: fromBase64Url(sig),
        verifyKey: sender.publicKey,
      });
      const body = MessageBody.safeParse(JSON.parse(utf8Decode(plaintext)));
      if (!body.success) return failed('DECRYPT_FAILED');
      this.#countForRotation(env.epoch, env.seq);
      return {
        ok: true,
        seq: env.seq,
        msgId: env.msgId,
        senderId: env.senderId,
        senderRole: sender.body.role,
        sentAt: env.sentAt,
        epoch: env.epoch,
        text: body.data.text,
        own: env.senderId === id.participantId,
      };
    } catch {
      // Bad certificate, signature, tag, UTF-8 or body: all say only that it failed.
      return failed('DECRYPT_FAILED');
    }
  }
}

/**
 * Contact and participant named by a token, read without verifying it (the services verify):
 * to find own outbox records and to bind key delivery to this participant.
 */
function tokenClaims(token: string): { contactId: string; participantId: string } | null {
  try {
    const claims = JSON.parse(utf8Decode(fromBase64Url(token.split('.')[1] ?? ''))) as { sub?: unknown; cid?: unknown };
    if (typeof claims.sub === 'string' && typeof claims.cid === 'string') return { contactId: claims.cid, participantId: claims.sub };
  } catch {
    // not a JWT: nothing to restore
  }
  return null;
}
