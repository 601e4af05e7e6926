/**
 * The Latchkey client (docs/protocol.md): connects to the relay with a participant token,
 * fetches the contact's content key and signed epoch statement from the key service, seals and
 * sends messages (a send resolves on the relay's ack), opens what arrives, checks the transcript,
 * and on reconnect resumes from the last seq it has seen, so that every message is emitted once,
 * in seq order, without gaps, as a message or as suspect. Runs in browsers (global WebSocket and
 * fetch) and in Node (pass `ws` as `WebSocket`).
 *
 * Its parts: key-session.ts (session key, certificate, and the key ring of key-ring.ts: content
 * keys and epoch statements kept current), inbox.ts (ordering, gaps, the transcript checks of
 * transcript.ts), open.ts (opening one envelope), send-queue.ts (outbox order, pace, retries),
 * events.ts (nothing emitted before a listener is lost), and here the connection and the sender
 * session's chain.
 */
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@latchkey/crypto/codec';
import { sealEnvelope } from '@latchkey/crypto/envelope';
import { randomBytes } from '@latchkey/crypto/random';
import { ZERO_HASH, chainStep } from '@latchkey/crypto/transcript';
import {
  ENVELOPE_ALG,
  ENVELOPE_VERSION,
  ERROR_CODES,
  FRESHNESS,
  LIMITS,
  LatchkeyError,
  MessageBody,
  MsgId,
  PROTOCOL_VERSION,
  Role as RoleSchema,
  SENDING_ROLES,
  ServerFrame,
  parseJson,
  type ClientFrame,
  type ErrorCode,
  type HistoryFrame,
  type Role,
  type SealedEnvelope,
  type ServerFrame as ServerFrameT,
  type StoredEnvelope,
} from '@latchkey/protocol';
import { Emitter } from './events.ts';
import { Inbox, judge, laterOf, verifierFrom } from './inbox.ts';
import type { KeyDeliveryMode } from './key-delivery.ts';
import { fetchServiceKey, type FetchLike } from './key-service.ts';
import { KeySession, type Identity } from './key-session.ts';
import { openStored, type Opened } from './open.ts';
import { SendQueue, type QueuedSend, type SendResult } from './send-queue.ts';
import { tlsFailure } from './tls-errors.ts';
import { MemoryOutbox, type OutboxStore } from './outbox.ts';
import type { TranscriptCheckpoint } from './transcript.ts';
import type { ChatMessage, FailedMessage, HistoryEntry } from './types.ts';

export type { ChatMessage, FailedMessage, HistoryEntry } from './types.ts';
export type { SendResult } from './send-queue.ts';

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
  /**
   * The transcript checkpoint at `since` (from `checkpoint()` of an earlier client), so that the
   * transcript checks go on across the resume; without it, what the senders had seen before
   * `since` cannot be checked.
   */
  checkpoint?: TranscriptCheckpoint | null;
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
  /**
   * Longest age (ms, by this client's clock) of the epoch statement a message may be sealed
   * under; an older one is fetched again first. Default FRESHNESS.maxAgeMs (10 s); at most that.
   */
  statementMaxAgeMs?: number;
}

/** An own message restored from the outbox store: sealed earlier, not yet acknowledged. */
export interface PendingMessage {
  msgId: string;
  sentAt: number;
  text: string;
}

/** Options of one `send`. */
export interface SendOptions {
  /**
   * The message id to seal under (16-64 of `[A-Za-z0-9_-]`), so that a UI can tie the send to
   * its `pending`, `message` and outbox records before the ack. Default: 16 random bytes.
   */
  msgId?: string;
}

interface Events extends Record<string, unknown> {
  message: ChatMessage;
  failed: FailedMessage;
  state: ConnectionState;
  error: LatchkeyError;
  pending: PendingMessage;
  /** The client adopted a new current epoch (from a signed statement): the badge follows it. */
  epoch: { epoch: number; fingerprint: string };
}

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: LatchkeyError) => void;
}

const OPEN = 1;
/** Close codes after which reconnecting with the same token cannot succeed. */
const FATAL_CLOSE = new Set<number>([
  ERROR_CODES.AUTH_INVALID.ws,
  ERROR_CODES.UNSUPPORTED_VERSION.ws,
  // removed from the contact (kicked, transferred away), contact expired or full
  ERROR_CODES.FORBIDDEN.ws,
  ERROR_CODES.CONTACT_EXPIRED.ws,
  ERROR_CODES.CONTACT_FULL.ws,
]);

/** The plaintext of a text message, exactly as sealed. */
function textPlaintext(text: string): Uint8Array {
  return utf8Encode(JSON.stringify({ type: 'text', text } satisfies MessageBody));
}

export class LatchkeyClient {
  readonly relayUrl: string;
  readonly keysUrl: string;
  #token: string;
  #opts: ClientOptions;
  #fetch: FetchLike;
  #WS: WebSocketConstructor;
  #now: () => number;
  #maxAge: number;

  #state: ConnectionState = 'idle';
  #ws: WebSocketLike | null = null;
  #events = new Emitter<Events>(['message', 'failed', 'error', 'pending', 'epoch']);

  /** Who this client is: from its token, confirmed by its certificate; never from the relay. */
  #identity: Identity | null;
  #serviceKey: Uint8Array | null = null;
  /** Session key, certificate, content keys and epoch statements (null until connect). */
  #keys: KeySession | null = null;

  /** The sender session's chain (transcript.ts): counter and chain value of the last sealed. */
  #ctr = 0;
  #chain: Uint8Array = ZERO_HASH;
  #inbox: Inbox;
  /** Seqs up to this came as replayed history at join; later deliveries are live. */
  #liveFrom = Number.MAX_SAFE_INTEGER;

  #queue: SendQueue;
  #sealChain: Promise<void> = Promise.resolve();
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
    const f = opts.fetch ?? (globalThis.fetch as FetchLike | undefined);
    const W = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!f) throw new TypeError('no fetch implementation: pass options.fetch');
    if (!W)
      throw new TypeError(
        'no WebSocket implementation: pass options.WebSocket (e.g. the ws package)',
      );
    this.#fetch = f;
    this.#WS = W;
    this.#now = opts.now ?? Date.now;
    this.#maxAge = Math.min(opts.statementMaxAgeMs ?? FRESHNESS.maxAgeMs, FRESHNESS.maxAgeMs);
    this.#outboxStore = opts.outbox ?? new MemoryOutbox();
    this.#queue = new SendQueue({
      store: this.#outboxStore,
      transmit: (frame) => this.#transmit(frame),
      ready: () => this.#state === 'connected',
      stored: (entry, seq) => this.#ownStored(entry, seq),
    });
    if (opts.serviceKey !== undefined) {
      this.#serviceKey =
        typeof opts.serviceKey === 'string' ? fromBase64Url(opts.serviceKey) : opts.serviceKey;
    }
    this.#identity = tokenClaims(opts.token);
    this.#inbox = new Inbox(
      {
        selfId: this.#identity?.participantId ?? '',
        now: () => this.#now(),
        statement: () => this.#keys?.ring ?? null,
        open: (env) => this.#open(env),
        page: async (since) =>
          (await this.#request({ since, limit: LIMITS.maxHistoryPage })).envelopes,
        onOpened: (o) => this.#keys?.opened(o.env.epoch, o.env.seq),
        message: (m) => this.#emit('message', m),
        failed: (m) => this.#emit('failed', m),
        connected: () => this.#state === 'connected',
      },
      opts.since ?? 0,
      opts.checkpoint,
    );
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
    return this.#inbox.lastSeq;
  }
  /** The current epoch, as last stated by the key service. */
  get epoch(): number {
    return this.#keys?.epoch ?? 0;
  }
  /** Messages sealed but not yet acknowledged. */
  get pendingSends(): number {
    return this.#queue.length;
  }

  /** The transcript state at `lastSeq`: pass it with `since` to resume with every check. */
  checkpoint(): TranscriptCheckpoint | null {
    return this.#inbox.checkpoint();
  }

  /**
   * Subscribes to an event. Events fired before the first listener of their kind (for example
   * while `connect()` is pending) wait for it, in order: none is lost.
   */
  on<K extends keyof Events & string>(event: K, listener: (value: Events[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /** Fingerprint of the current content key, to compare out of band with the other side. */
  fingerprint(): string {
    if (!this.#keys) throw new LatchkeyError('KEY_UNAVAILABLE', 'not connected');
    return this.#keys.fingerprint();
  }

  /**
   * Fetches the key, certificate and epoch statement, opens the socket, authenticates and
   * (unless `live: false`) joins.
   * @throws LatchkeyError AUTH_INVALID / AUTH_EXPIRED / KEY_UNAVAILABLE / UNAVAILABLE / INTEGRITY
   */
  async connect(): Promise<void> {
    if (this.#state === 'closed') throw new LatchkeyError('UNAVAILABLE', 'client is closed');
    this.#setState('connecting');
    try {
      const id = this.#identity;
      if (!id) throw new LatchkeyError('AUTH_INVALID', 'invalid token');
      if (!this.#serviceKey) {
        this.#serviceKey = fromBase64Url(
          (await fetchServiceKey(this.#fetch, this.keysUrl)).publicKey,
        );
      }
      this.#keys ??= new KeySession({
        fetch: this.#fetch,
        keysUrl: this.keysUrl,
        token: this.#token,
        identity: id,
        serviceKey: this.#serviceKey,
        keyDelivery: this.#opts.keyDelivery ?? 'x25519',
        now: () => this.#now(),
        maxAgeMs: this.#maxAge,
        rotateAfterMessages: this.#opts.rotateAfterMessages,
        onEpoch: (e) => this.#emit('epoch', e),
        onError: (e) => this.#emit('error', e),
      });
      await this.#keys.fetchCurrent();
      await this.#restoreOutbox();
      await this.#openSocket();
    } catch (err) {
      this.#setState('closed');
      this.#ws?.close(1000);
      throw err instanceof LatchkeyError
        ? err
        : new LatchkeyError('UNAVAILABLE', 'connect failed', { cause: err });
    }
  }

  /**
   * Seals `text` and sends it. Resolves once the relay has stored it (its ack); a message
   * sent while disconnected waits in the outbox and goes out once, in order, on reconnect.
   * Before sealing, the epoch statement is fetched again when it is older than
   * `statementMaxAgeMs` or an envelope of a newer epoch was seen: nothing is sealed under an
   * epoch the key service no longer states.
   * @throws LatchkeyError FORBIDDEN (role may not send), TOO_LARGE, BAD_REQUEST (empty text or
   *   malformed `msgId`), CONFLICT (`msgId` already waiting in the outbox), KEY_UNAVAILABLE
   *   (no fresh statement could be had), or the relay's code.
   */
  async send(text: string, opts: SendOptions = {}): Promise<SendResult> {
    const id = this.#need();
    if (opts.msgId !== undefined && !MsgId.safeParse(opts.msgId).success)
      throw new LatchkeyError('BAD_REQUEST', 'malformed msgId');
    if (opts.msgId !== undefined && this.#queue.has(opts.msgId)) {
      throw new LatchkeyError('CONFLICT', 'msgId already waiting in the outbox');
    }
    if (!SENDING_ROLES.has(id.role))
      throw new LatchkeyError('FORBIDDEN', `${id.role} may not send`);
    if (typeof text !== 'string' || text.length === 0)
      throw new LatchkeyError('BAD_REQUEST', 'empty message');
    const body: MessageBody = { type: 'text', text };
    const plaintext = textPlaintext(text);
    if (plaintext.length > LIMITS.maxPlaintextBytes || !MessageBody.safeParse(body).success) {
      throw new LatchkeyError('TOO_LARGE', 'message too large');
    }
    const msgId = opts.msgId ?? toBase64Url(randomBytes(16));
    // Sealing is asynchronous: chain it so that messages enter the outbox in call order and the
    // session's counter and chain follow that order.
    const sealing = this.#sealChain.then(() => this.#seal(id, msgId, plaintext));
    this.#sealChain = sealing.then(
      () => undefined,
      () => undefined,
    );
    const envelope = await sealing;
    return this.#queue.enqueue(envelope, text);
  }

  /** Seals one message under a fresh statement's epoch, as the session's next in its chain. */
  async #seal(id: Identity, msgId: string, plaintext: Uint8Array): Promise<SealedEnvelope> {
    const keys = this.#keys;
    if (!keys) throw new LatchkeyError('UNAVAILABLE', 'not connected');
    // What this member vouches for: everything it has received so far, checked (the join replay
    // arrives before `joined`, so it is all queued by now) — and never a newer epoch than the one
    // it seals under, or receivers would rightly call it stale: then it asks again.
    let epoch: number;
    let seen: { seenSeq: number; seenHash: Uint8Array };
    for (let attempt = 0; ; attempt++) {
      await this.#inbox.settled();
      await keys.ensureFresh();
      epoch = keys.epoch;
      seen = this.#inbox.seen();
      if (keys.maxEpochSeen <= epoch) break;
      if (attempt >= 2)
        throw new LatchkeyError(
          'KEY_UNAVAILABLE',
          'the key service does not state the newest epoch seen',
        );
    }
    const key = keys.ring.key(epoch);
    const cert = keys.cert;
    if (!key || !cert || keys.certBody?.epoch !== epoch)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'no content key for the current epoch');
    const ctr = this.#ctr + 1;
    const prev = this.#chain;
    const header = {
      v: ENVELOPE_VERSION,
      alg: ENVELOPE_ALG,
      contactId: id.contactId,
      epoch,
      senderId: id.participantId,
      msgId,
      sentAt: this.#now(),
      ctr,
    };
    const sealed = await sealEnvelope({
      key,
      header: { ...header, prev, seenSeq: seen.seenSeq, seenHash: seen.seenHash },
      plaintext,
      signingKey: keys.signingSecretKey,
    });
    this.#ctr = ctr;
    this.#chain = chainStep(prev, ctr, msgId, plaintext);
    return {
      ...header,
      prev: toBase64Url(prev),
      seenSeq: seen.seenSeq,
      seenHash: toBase64Url(seen.seenHash),
      nonce: toBase64Url(sealed.nonce),
      ciphertext: toBase64Url(sealed.ciphertext),
      sig: toBase64Url(sealed.sig),
      cert,
    };
  }

  /**
   * Reads the stored history after `since` (all pages), opening and checking each message
   * (transcript checks run over this read alone: complete from seq 0). Messages that fail to
   * open are `{ ok: false, code: 'DECRYPT_FAILED' }`, those that fail a check
   * `{ ok: false, code: 'INTEGRITY', integrity }`.
   * @throws LatchkeyError UNAVAILABLE when not connected
   */
  async history(since = 0): Promise<HistoryEntry[]> {
    const envelopes: StoredEnvelope[] = [];
    let cursor = since;
    for (;;) {
      const page = await this.#request({ since: cursor, limit: LIMITS.maxHistoryPage });
      for (const env of page.envelopes) {
        // The relay's order must be ascending and contiguous; anything else is its lie.
        if (env.seq <= cursor) continue;
        envelopes.push(env);
        cursor = env.seq;
      }
      if (!page.more || page.envelopes.length === 0) break;
    }
    const opened: Opened[] = [];
    for (const env of envelopes) opened.push(await this.#open(env));
    const verifier = verifierFrom(since, since === this.#opts.since ? this.#opts.checkpoint : null);
    const out: HistoryEntry[] = [];
    for (let i = 0; i < opened.length; i++) {
      const o = opened[i]!;
      const expected = verifier.seq + 1;
      if (o.env.seq !== expected) {
        // A hole in the relay's numbering: the seqs in between are missing.
        out.push({
          ok: false,
          seq: expected,
          msgId: '',
          senderId: '',
          code: 'INTEGRITY',
          integrity: 'MISSING',
          missing: o.env.seq - expected,
        });
        verifier.skipTo(o.env.seq);
      }
      out.push(
        judge(verifier, o, false, {
          statement: this.#keys?.ring ?? null,
          now: this.#now(),
          selfId: this.#identity?.participantId ?? '',
          later: laterOf(opened.slice(i + 1, i + 1 + LIMITS.maxHistoryPage)),
        }),
      );
    }
    return out;
  }

  /** Closes the connection for good. Unacknowledged sends are rejected. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#inbox.close();
    this.#keys?.close();
    this.#queue.close();
    this.#ws?.close(1000);
    this.#ws = null;
    this.#failAll(new LatchkeyError('UNAVAILABLE', 'client closed'));
  }

  // --- internals -------------------------------------------------------------------------

  #need(): Identity {
    if (!this.#identity || !this.#keys?.cert)
      throw new LatchkeyError('UNAVAILABLE', 'not connected');
    return this.#identity;
  }

  #emit<K extends keyof Events & string>(event: K, value: Events[K]): void {
    this.#events.emit(event, value);
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
        ws.send(
          JSON.stringify({
            v: PROTOCOL_VERSION,
            type: 'auth',
            token: this.#token,
          } satisfies ClientFrame),
        );
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
      FATAL_CLOSE.has(code) ||
      err.code === 'AUTH_EXPIRED' ||
      err.code === 'AUTH_INVALID' ||
      err.code === 'TLS_FAILED';
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
    this.#queue.failAll(err);
    for (const [, p] of this.#requests) p.reject(err);
    this.#requests.clear();
  }

  #scheduleReconnect(): void {
    this.#setState('reconnecting');
    // Whatever changed while the connection was down (a kick, a rotation) is learnt from the key
    // service before anything is sealed again, whatever the relay says or does not say.
    this.#keys?.expire();
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
        // Who we are comes from our token and certificate; a relay that says otherwise lies.
        const id = this.#identity;
        if (
          !id ||
          frame.contactId !== id.contactId ||
          frame.participantId !== id.participantId ||
          frame.role !== id.role
        ) {
          this.#lastError = new LatchkeyError(
            'INTEGRITY',
            'the relay named another identity than the token',
          );
          this.#ws?.close(1000);
          return;
        }
        if (this.#opts.live === false) this.#becomeReady();
        else this.#transmit({ v: PROTOCOL_VERSION, type: 'join', since: this.#inbox.lastSeq });
        return;
      }
      case 'joined':
        this.#liveFrom = frame.head;
        this.#becomeReady();
        return;
      case 'deliver':
        this.#inbox.enqueue(frame.envelope, frame.envelope.seq > this.#liveFrom);
        return;
      case 'ack':
        this.#queue.onAck(frame);
        return;
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
        // Only a hint: the signed statement from the key service decides.
        void this.#keys?.refresh();
        return;
    }
  }

  #onError(
    code: ErrorCode,
    message: string,
    ref: { msgId?: string | undefined; id?: string | undefined } | undefined,
  ): void {
    const err = new LatchkeyError(code, message);
    if (ref?.msgId) {
      this.#queue.onError(ref.msgId, err);
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
      this.#queue.onRateLimited();
      return;
    }
    this.#lastError = err;
    this.#emit('error', err);
  }

  /**
   * Loads what an earlier session left in the outbox store for this contact and participant,
   * opens each envelope locally (it must verify as our own), emits it as `pending`, and queues
   * it ahead of anything new. An envelope that no longer opens is dropped from the store.
   */
  async #restoreOutbox(): Promise<void> {
    const id = this.#identity;
    if (!id) return;
    let stored: SealedEnvelope[];
    try {
      stored = await this.#outboxStore.load(id.contactId, id.participantId);
    } catch {
      return; // storage refused: nothing to restore
    }
    const known = this.#queue.msgIds();
    const restored: { envelope: SealedEnvelope; text: string }[] = [];
    for (const envelope of stored) {
      if (known.has(envelope.msgId)) continue;
      const text = await this.#openOwn(envelope, id);
      if (text === null) {
        await this.#outboxStore.delete(envelope.contactId, envelope.msgId).catch(() => undefined);
        continue;
      }
      known.add(envelope.msgId);
      restored.push({ envelope, text });
      this.#emit('pending', { msgId: envelope.msgId, sentAt: envelope.sentAt, text });
    }
    this.#queue.prepend(restored);
  }

  /** Opens an own envelope from the outbox store; null when it is not ours or does not open. */
  async #openOwn(env: SealedEnvelope, id: Identity): Promise<string | null> {
    if (env.contactId !== id.contactId || env.senderId !== id.participantId) return null;
    const opened = await this.#open({ ...env, seq: 1 });
    return opened.ok ? opened.text : null;
  }

  #becomeReady(): void {
    this.#attempt = 0;
    const ready = this.#ready;
    this.#ready = null;
    this.#setState('connected');
    this.#queue.resend();
    ready?.resolve();
  }

  #request(args: { since: number; limit: number }): Promise<HistoryFrame> {
    if (this.#state !== 'connected')
      return Promise.reject(new LatchkeyError('UNAVAILABLE', 'not connected'));
    const id = `h${this.#nextRequest++}`;
    return new Promise<HistoryFrame>((resolve, reject) => {
      this.#requests.set(id, { resolve, reject });
      this.#transmit({
        v: PROTOCOL_VERSION,
        type: 'history',
        id,
        since: args.since,
        limit: args.limit,
      });
    });
  }

  /** Own message stored at `seq`: it joins the ordered stream without a round trip. */
  #ownStored(entry: QueuedSend, seq: number): void {
    const id = this.#identity;
    if (!id) return;
    // The session that sealed it: this one, or an earlier one whose outbox was restored (its
    // envelope was opened and verified as ours then).
    let cert: { publicKey: string; notAfter: number };
    try {
      cert = JSON.parse(utf8Decode(fromBase64Url(entry.envelope.cert.body))) as {
        publicKey: string;
        notAfter: number;
      };
    } catch {
      return;
    }
    this.#inbox.addOwn({
      ok: true,
      env: { ...entry.envelope, seq },
      plaintext: textPlaintext(entry.text),
      text: entry.text,
      role: id.role,
      sessionKey: cert.publicKey,
      certNotAfter: cert.notAfter,
    });
  }

  /** Verifies the sender and opens one stored envelope. Never throws for bad content. */
  #open(env: StoredEnvelope): Promise<Opened> {
    return openStored(env, {
      contactId: this.#identity?.contactId ?? '',
      serviceKey: this.#serviceKey,
      keyFor: (epoch) =>
        this.#keys
          ? this.#keys.keyFor(epoch)
          : Promise.reject(new LatchkeyError('KEY_UNAVAILABLE', 'not connected')),
    });
  }
}

/**
 * Contact, participant and role named by a token, read without verifying it (the services
 * verify; the certificate confirms): this client's identity, never taken from the relay.
 */
function tokenClaims(token: string): Identity | null {
  try {
    const claims = JSON.parse(utf8Decode(fromBase64Url(token.split('.')[1] ?? ''))) as {
      sub?: unknown;
      cid?: unknown;
      role?: unknown;
    };
    const role = RoleSchema.safeParse(claims.role);
    if (typeof claims.sub === 'string' && typeof claims.cid === 'string' && role.success) {
      return { contactId: claims.cid, participantId: claims.sub, role: role.data };
    }
  } catch {
    // not a JWT
  }
  return null;
}
