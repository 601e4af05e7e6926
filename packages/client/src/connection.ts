/**
 * The client's connection to the relay (docs/protocol.md "Connection", "Ordering and
 * resumption"): one WebSocket at a time, authenticated with the token, joined from the last seq
 * seen; its state (`idle` → `connecting` → `connected` ⇄ `reconnecting` → `closed`), reconnects
 * with jittered exponential backoff unless a close says the same token cannot succeed, and the
 * history requests that wait for their answers. Frames are parsed with the protocol schema; a
 * relay that names another identity than the token is disconnected. What the frames carry
 * (deliveries, acks, send errors, rekey hints) goes to the handlers; the connection keeps no
 * message state of its own.
 */
import {
  ERROR_CODES,
  LatchkeyError,
  PROTOCOL_VERSION,
  ServerFrame,
  backoffDelay,
  parseJson,
  type AckFrame,
  type ClientFrame,
  type ErrorCode,
  type HistoryFrame,
  type SealedSignal,
  type ServerFrame as ServerFrameT,
  type StoredEnvelope,
} from '@latchkey/protocol';
import type { Identity } from './key-session.ts';
import { tlsFailure } from './tls-errors.ts';

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

export interface ConnectionOptions {
  relayUrl: string;
  token: string;
  WebSocket: WebSocketConstructor;
  /** Who the relay must say we are (from the token); null: the token names nobody. */
  identity: Identity | null;
  /** Join for live delivery after `ready` (false: ready at once, history reads and sends only). */
  live: boolean;
  reconnect: boolean;
  backoff: { minMs: number; maxMs: number };
}

/** What the connection hands on. Called synchronously, in the order the events happen. */
export interface ConnectionHandlers {
  /** The seq to join from (the last one emitted). */
  since(): number;
  /** A delivered envelope; `live` when it came after the join's replayed history. */
  deliver(env: StoredEnvelope, live: boolean): void;
  ack(frame: AckFrame): void;
  /** The relay refused the send of `msgId`. */
  sendError(msgId: string, err: LatchkeyError): void;
  rateLimited(): void;
  /** The relay hints that the key service has a newer epoch. */
  rekey(): void;
  /** A signal (typing, seen) the relay forwarded from participant `from`; unchecked. */
  signal?(from: string, signal: SealedSignal): void;
  state(s: ConnectionState): void;
  error(err: LatchkeyError): void;
  /** Connected (first time or again): what waited may go out. */
  ready(): void;
  /** The connection was lost and a reconnect is scheduled. */
  reconnecting(): void;
  /** The connection closed for good with `err`: fail what waits for an answer. */
  failed(err: LatchkeyError): void;
}

export class Connection {
  readonly #o: ConnectionOptions;
  readonly #h: ConnectionHandlers;
  #state: ConnectionState = 'idle';
  #ws: WebSocketLike | null = null;
  #requests = new Map<string, Pending<HistoryFrame>>();
  #nextRequest = 1;
  #ready: Pending<void> | null = null;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #lastError: LatchkeyError | null = null;
  /** Seqs up to this came as replayed history at join; later deliveries are live. */
  #liveFrom = Number.MAX_SAFE_INTEGER;

  constructor(o: ConnectionOptions, h: ConnectionHandlers) {
    this.#o = o;
    this.#h = h;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Moves to `s` and reports it; nothing leaves `closed`. */
  setState(s: ConnectionState): void {
    if (this.#state === s) return;
    if (this.#state === 'closed') return;
    this.#state = s;
    this.#h.state(s);
  }

  /**
   * Opens the socket, authenticates and (when live) joins. Resolves once ready.
   * @throws LatchkeyError with the reason the attempt closed before it was ready
   */
  open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
      this.#lastError = null;
      const ws = new this.#o.WebSocket(this.#o.relayUrl);
      this.#ws = ws;
      ws.onopen = () => {
        ws.send(
          JSON.stringify({
            v: PROTOCOL_VERSION,
            type: 'auth',
            token: this.#o.token,
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

  /** Closes the current socket, if any (its close is then ignored only once it is replaced). */
  dropSocket(): void {
    this.#ws?.close(1000);
  }

  /** Closes for good: no reconnect; what waits is failed by `failRequests` and the handlers. */
  close(): void {
    this.setState('closed');
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#ws?.close(1000);
    this.#ws = null;
  }

  /** Sends a frame when the socket is open (else it is dropped: the send queue resends). */
  transmit(frame: ClientFrame): void {
    const ws = this.#ws;
    if (ws && ws.readyState === OPEN) ws.send(JSON.stringify(frame));
  }

  /**
   * Asks for one page of stored history.
   * @throws LatchkeyError UNAVAILABLE when not connected or the connection is lost first
   */
  request(args: { since: number; limit: number }): Promise<HistoryFrame> {
    if (this.#state !== 'connected')
      return Promise.reject(new LatchkeyError('UNAVAILABLE', 'not connected'));
    const id = `h${this.#nextRequest++}`;
    return new Promise<HistoryFrame>((resolve, reject) => {
      this.#requests.set(id, { resolve, reject });
      this.transmit({
        v: PROTOCOL_VERSION,
        type: 'history',
        id,
        since: args.since,
        limit: args.limit,
      });
    });
  }

  /** Rejects every history request still waiting. */
  failRequests(err: LatchkeyError): void {
    for (const [, p] of this.#requests) p.reject(err);
    this.#requests.clear();
  }

  #onClose(code: number): void {
    const err = this.#lastError ?? new LatchkeyError('UNAVAILABLE', `connection closed (${code})`);
    this.failRequests(err);
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
    if (fatal || !this.#o.reconnect) {
      this.#fatal(err);
      return;
    }
    this.#scheduleReconnect();
  }

  #fatal(err: LatchkeyError): void {
    this.#h.error(err);
    this.setState('closed');
    this.#h.failed(err);
    this.failRequests(err);
  }

  #scheduleReconnect(): void {
    this.setState('reconnecting');
    this.#h.reconnecting();
    const { minMs, maxMs } = this.#o.backoff;
    const delay = backoffDelay(this.#attempt, { baseMs: minMs, maxMs, jitter: 'equal' });
    this.#attempt++;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#state === 'closed') return;
      this.open().catch(() => {
        if (this.#state === 'reconnecting') this.#scheduleReconnect();
      });
    }, delay);
  }

  #becomeReady(): void {
    this.#attempt = 0;
    const ready = this.#ready;
    this.#ready = null;
    this.setState('connected');
    this.#h.ready();
    ready?.resolve();
  }

  #onFrame(frame: ServerFrameT): void {
    switch (frame.type) {
      case 'ready': {
        // Who we are comes from our token and certificate; a relay that says otherwise lies.
        const id = this.#o.identity;
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
        if (!this.#o.live) this.#becomeReady();
        else this.transmit({ v: PROTOCOL_VERSION, type: 'join', since: this.#h.since() });
        return;
      }
      case 'joined':
        this.#liveFrom = frame.head;
        this.#becomeReady();
        return;
      case 'deliver':
        this.#h.deliver(frame.envelope, frame.envelope.seq > this.#liveFrom);
        return;
      case 'ack':
        this.#h.ack(frame);
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
        this.#h.rekey();
        return;
      case 'signal':
        this.#h.signal?.(frame.from, frame.signal);
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
      this.#h.sendError(ref.msgId, err);
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
      this.#h.rateLimited();
      return;
    }
    this.#lastError = err;
    this.#h.error(err);
  }
}
