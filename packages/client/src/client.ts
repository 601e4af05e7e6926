/**
 * The Latchkey client (docs/protocol.md): connects to the relay with a participant token,
 * fetches the contact's content key and signed epoch statement from the key service, seals and
 * sends messages (a send resolves on the relay's ack), opens what arrives, checks the transcript,
 * and on reconnect resumes from the last seq it has seen, so that every message is emitted once,
 * in seq order, without gaps, as a message or as suspect. Runs in browsers (global WebSocket and
 * fetch) and in Node (pass `ws` as `WebSocket`).
 *
 * This file wires the parts (each says what it does in its header): connection.ts, key-session.ts,
 * sender.ts, send-queue.ts, outbox-restore.ts, inbox.ts, history.ts, open.ts, events.ts, the
 * file API (client-files.ts over files.ts) and signals (client-signals.ts over signals.ts).
 */
import { fromBase64Url } from '@latchkey/crypto/codec';
import { LIMITS, LatchkeyError, type Role, type StoredEnvelope } from '@latchkey/protocol';
import { Connection, type ConnectionState } from './connection.ts';
import { relayHttpBase } from './file-http.ts';
import { ClientSignalMethods } from './client-signals.ts';
import { ClientFiles } from './files.ts';
import { readHistory } from './history.ts';
import { Inbox } from './inbox.ts';
import { fetchServiceKey } from './key-service.ts';
import { KeySession, type Identity } from './key-session.ts';
import { openStored, type Opened } from './open.ts';
import { keySessionOptions, withDefaults, type ResolvedOptions } from './options.ts';
import type { ClientOptions, SendOptions } from './options.ts';
import { restoreOutbox } from './outbox-restore.ts';
import { SendQueue, type SendResult } from './send-queue.ts';
import { Sender, checkSend, ownOpened } from './sender.ts';
import { Signals } from './signals.ts';
import { tokenClaims } from './token-claims.ts';
import type { TranscriptCheckpoint } from './transcript.ts';
import type { HistoryEntry } from './types.ts';

export class LatchkeyClient extends ClientSignalMethods {
  readonly relayUrl: string;
  readonly keysUrl: string;
  #opts: ClientOptions;
  /** The options with their defaults. */
  #o: ResolvedOptions;

  #conn: Connection;
  /** Who this client is: from its token, confirmed by its certificate; never from the relay. */
  #identity: Identity | null;
  #serviceKey: Uint8Array | null;
  /** Session key, certificate, content keys and epoch statements (null until connect). */
  #keys: KeySession | null = null;

  #inbox: Inbox;
  #sender: Sender;
  #queue: SendQueue;
  protected readonly files: ClientFiles;
  protected readonly signals: Signals;

  constructor(opts: ClientOptions) {
    super();
    this.relayUrl = opts.relayUrl;
    this.keysUrl = opts.keysUrl;
    this.#opts = opts;
    this.#o = withDefaults(opts);
    this.#serviceKey = this.#o.serviceKey;
    this.#identity = tokenClaims(opts.token);
    this.#conn = new Connection(
      {
        relayUrl: opts.relayUrl,
        token: opts.token,
        WebSocket: this.#o.WebSocket,
        identity: this.#identity,
        live: opts.live !== false,
        reconnect: opts.reconnect !== false,
        backoff: opts.backoff ?? { minMs: 200, maxMs: 10_000 },
      },
      {
        since: () => this.#inbox.lastSeq,
        deliver: (env, live) => this.#inbox.enqueue(env, live),
        ack: (frame) => this.#queue.onAck(frame),
        sendError: (msgId, err) => this.#queue.onError(msgId, err),
        rateLimited: () => this.#queue.onRateLimited(),
        rekey: () => void this.#keys?.refresh(),
        signal: (from, signal) => this.signals.receive(from, signal),
        state: (s) => this.events.emit('state', s),
        error: (err) => this.events.emit('error', err),
        ready: () => this.#queue.resend(),
        // Whatever changed while the connection was down (a kick, a rotation) is learnt from the
        // key service before anything is sealed again, whatever the relay says or does not say.
        reconnecting: () => this.#keys?.expire(),
        failed: (err) => this.#queue.failAll(err),
      },
    );
    this.#queue = new SendQueue({
      store: this.#o.outbox,
      transmit: (frame) => this.#conn.transmit(frame),
      ready: () => this.#conn.state === 'connected',
      stored: (entry, seq) => {
        const own = this.#identity ? ownOpened(entry, seq, this.#identity.role) : null;
        if (own) this.#inbox.addOwn(own);
      },
    });
    this.#inbox = new Inbox(
      {
        selfId: this.#identity?.participantId ?? '',
        now: () => this.#o.now(),
        statement: () => this.#keys?.ring ?? null,
        open: (env) => this.#open(env),
        page: async (since) =>
          (await this.#conn.request({ since, limit: LIMITS.maxHistoryPage })).envelopes,
        onOpened: (o) => this.#keys?.opened(o.env.epoch, o.env.seq),
        message: (m) => this.events.emit('message', this.files.present(m)),
        failed: (m) => this.events.emit('failed', m),
        connected: () => this.#conn.state === 'connected',
      },
      opts.since ?? 0,
      opts.checkpoint,
    );
    this.#sender = new Sender({
      keys: () => this.#keys,
      settled: () => this.#inbox.settled(),
      seen: () => this.#inbox.seen(),
      now: () => this.#o.now(),
    });
    const http = { fetch: this.#o.fetch, base: opts.filesUrl ?? relayHttpBase(opts.relayUrl) };
    this.files = new ClientFiles(
      {
        http: { ...http, token: opts.token },
        identity: () => this.#need(),
        sender: this.#sender,
        queue: this.#queue,
        scan: (u) => this.events.emit('scan', u),
      },
      opts.scanning === true,
    );
    this.signals = new Signals({
      session: () => ({ id: this.#identity, keys: this.#keys, serviceKey: this.#serviceKey }),
      conn: this.#conn,
      events: this.events,
      now: () => this.#o.now(),
    });
  }

  /** Creates a client and connects it. */
  static async connect(opts: ClientOptions): Promise<LatchkeyClient> {
    const client = new LatchkeyClient(opts);
    await client.connect();
    return client;
  }

  get state(): ConnectionState {
    return this.#conn.state;
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
    if (this.#conn.state === 'closed') throw new LatchkeyError('UNAVAILABLE', 'client is closed');
    this.#conn.setState('connecting');
    try {
      const id = this.#identity;
      if (!id) throw new LatchkeyError('AUTH_INVALID', 'invalid token');
      if (!this.#serviceKey) {
        this.#serviceKey = fromBase64Url(
          (await fetchServiceKey(this.#o.fetch, this.keysUrl)).publicKey,
        );
      }
      this.#keys ??= new KeySession(
        keySessionOptions(this.#opts, this.#o, id, this.#serviceKey, {
          onEpoch: (e) => this.events.emit('epoch', e),
          onError: (e) => this.events.emit('error', e),
        }),
      );
      await this.#keys.fetchCurrent();
      await restoreOutbox(
        {
          store: this.#o.outbox,
          queue: this.#queue,
          open: (env) => this.#open(env),
          pending: (m) => this.events.emit('pending', m),
        },
        id,
      );
      await this.#conn.open();
    } catch (err) {
      this.#conn.setState('closed');
      this.#conn.dropSocket();
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
    const { msgId, plaintext } = checkSend(id.role, text, opts.msgId, (m) => this.#queue.has(m));
    const envelope = await this.#sender.seal(id, msgId, plaintext);
    return this.#queue.enqueue(envelope, text, plaintext);
  }

  /**
   * Reads the stored history after `since` (all pages), opening and checking each message
   * (transcript checks run over this read alone: complete from seq 0). Messages that fail to
   * open are `{ ok: false, code: 'DECRYPT_FAILED' }`, those that fail a check
   * `{ ok: false, code: 'INTEGRITY', integrity }`.
   * @throws LatchkeyError UNAVAILABLE when not connected
   */
  async history(since = 0): Promise<HistoryEntry[]> {
    const entries = await readHistory(
      {
        request: (args) => this.#conn.request(args),
        open: (env) => this.#open(env),
        statement: () => this.#keys?.ring ?? null,
        now: () => this.#o.now(),
        selfId: this.#identity?.participantId ?? '',
        checkpointAt: (s) => (s === this.#opts.since ? this.#opts.checkpoint : null),
      },
      since,
    );
    return this.files.presentAll(entries);
  }

  /** Closes the connection for good. Unacknowledged sends are rejected. */
  close(): void {
    if (this.#conn.state === 'closed') return;
    this.#conn.close();
    this.#inbox.close();
    this.#keys?.close();
    this.#queue.close();
    this.signals.close();
    const err = new LatchkeyError('UNAVAILABLE', 'client closed');
    this.#queue.failAll(err);
    this.#conn.failRequests(err);
  }

  #need(): Identity {
    if (!this.#identity || !this.#keys?.cert)
      throw new LatchkeyError('UNAVAILABLE', 'not connected');
    return this.#identity;
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
