/**
 * One peer's connection. As in ws (the server accepts and routes, the socket's life lives in
 * its own class), this owns everything about one peer: its phase and principal, writes with the
 * slow-reader guard, typed error frames and the protocol-error count (too many close with
 * 1008), the per-connection frame rate and its share of the participant's byte rate (floods
 * get RATE_LIMITED, sustained abuse is cut off), the auth and token-expiry timers, and liveness
 * (a socket silent for two heartbeats is terminated). What a frame means is handlers.ts's
 * business; the connection's place in its contact's stream is contact-stream.ts's.
 *
 * Peers only ever see an ErrorFrame with a stable code and a short fixed message; details go
 * to the log, and only our own typed ones (a foreign error's message might quote input).
 */
import type { RawData } from 'ws';
import {
  ERROR_CODES,
  LatchkeyError,
  PROTOCOL_VERSION,
  WS_CLOSE_GOING_AWAY,
  WS_CLOSE_POLICY,
  toLatchkeyError,
  type ErrorCode,
  type ErrorFrame,
  type Principal,
  type ServerFrame,
} from '@latchkey/protocol';
import { TokenBucket, type RateLimitOptions } from './limiter.ts';
import { CLOCK_TOLERANCE_SECONDS, type RelayLogEvent } from './options.ts';
import type { ByteLease } from './participant-limits.ts';
import type { Corkable, WriteBatch } from './write-batch.ts';

/** The part of ws's WebSocket a connection uses (a fake one in unit tests). */
export interface PeerSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code: number, reason: string): void;
  ping(): void;
  terminate(): void;
  on(event: 'pong', listener: () => void): this;
  on(event: 'message', listener: (data: RawData, isBinary: boolean) => void): this;
  on(event: 'error', listener: (err: Error & { code?: string }) => void): this;
  on(event: 'close', listener: (code: number) => void): this;
  once(event: 'close', listener: () => void): this;
}

/** ws's readyState values. */
const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

export type Phase = 'auth' | 'authenticating' | 'ready' | 'closed';

export interface ConnectionOptions {
  id: number;
  /** Client IP, for the per-IP limits. */
  ip: string;
  maxFrameBytes: number;
  maxProtocolErrors: number;
  authTimeoutMs: number;
  rateLimit: RateLimitOptions;
  /** The per-IP frame budget that every connection of an IP shares (admission.ts). */
  ipFrames: { takeFrame(ip: string): boolean };
  log: (event: RelayLogEvent) => void;
  /** A text frame within the limits (frames sent while authenticating wait for takeEarly). */
  onText: (c: Connection, text: string) => void;
  /** Cut off for rate abuse after authentication: its participant cools down. */
  onRateAbuse: (principal: Principal, now: number) => void;
  /** The socket closed (after the connection released its timers and byte lease). */
  onClose: (c: Connection) => void;
  /**
   * The connection's TCP/TLS socket and the relay's write batch: frames of one loop turn go
   * out in one write (write-batch.ts). Without them every frame is written on its own.
   */
  coalesce?: { socket: Corkable; batch: WriteBatch };
  now?: () => number;
}

/** Frames a connection may pipeline behind its auth frame before it is cut off. */
export const MAX_EARLY_FRAMES = 32;
/** Rate-limited frames within RATE_WINDOW_MS that close a connection. */
export const MAX_RATE_DROPS = 100;
const RATE_WINDOW_MS = 10_000;
/** Outgoing bytes a slow reader may leave queued before it is dropped (it can resume). */
export const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Short, fixed messages per code: nothing of the peer's input or of our internals. */
const MESSAGES: Partial<Record<ErrorCode, string>> = {
  AUTH_REQUIRED: 'auth frame required first',
  AUTH_TIMEOUT: 'auth timeout',
  AUTH_EXPIRED: 'token expired',
  AUTH_INVALID: 'invalid token',
  UNAVAILABLE: 'temporarily unavailable',
  INTERNAL: 'internal error',
  RATE_LIMITED: 'rate limit exceeded',
  QUOTA_EXCEEDED: 'storage quota of this contact or participant used up',
  CONFLICT: 'msgId already used for another message',
};

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function rawSize(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data.byteLength;
}

export class Connection {
  readonly id: number;
  readonly ip: string;
  readonly #ws: PeerSocket;
  readonly #opts: ConnectionOptions;
  readonly #now: () => number;
  readonly #bucket: TokenBucket;
  phase: Phase = 'auth';
  principal: Principal | undefined;
  /** Frames received while the token is being verified. */
  #early: string[] = [];
  #alive = true;
  #protocolErrors = 0;
  /** The participant's byte bucket, shared by its connections here (once authenticated). */
  #bytes: ByteLease | undefined;
  #rateWindowStart: number;
  #rateDrops = 0;
  #timers: NodeJS.Timeout[] = [];

  constructor(ws: PeerSocket, opts: ConnectionOptions) {
    this.id = opts.id;
    this.ip = opts.ip;
    this.#ws = ws;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#bucket = new TokenBucket(opts.rateLimit, this.#now);
    this.#rateWindowStart = this.#now();
    opts.log({ event: 'connect', conn: this.id });
    this.#timers.push(
      setTimeout(() => {
        if (this.phase === 'auth' || this.phase === 'authenticating') this.error('AUTH_TIMEOUT');
      }, opts.authTimeoutMs),
    );
    ws.on('pong', () => {
      this.#alive = true;
    });
    ws.on('message', (data, isBinary) => {
      try {
        this.#onMessage(data, isBinary);
      } catch (err) {
        this.failure(err);
      }
    });
    ws.on('error', (err) => {
      const code: ErrorCode =
        err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'TOO_LARGE' : 'BAD_FRAME';
      opts.log({ event: 'error', conn: this.id, code, wsError: err.code });
    });
    ws.on('close', (code) => {
      this.phase = 'closed';
      for (const t of this.#timers) clearTimeout(t);
      this.#timers = [];
      this.#early = [];
      this.#bytes?.release();
      this.#bytes = undefined;
      opts.onClose(this);
      opts.log({ event: 'close', conn: this.id, wsCode: code });
    });
  }

  /** Authenticated and not closed: frames are served. */
  get ready(): boolean {
    return this.phase === 'ready';
  }

  /** The socket is open (writes go out). */
  get open(): boolean {
    return this.#ws.readyState === OPEN;
  }

  /** Sends a serialized frame; a reader too slow to drain its queue is closed. */
  sendText(text: string): void {
    if (this.#ws.readyState !== OPEN) return;
    if (this.#ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.#opts.log({ event: 'slow-consumer', conn: this.id });
      this.close(ERROR_CODES.UNAVAILABLE.ws, 'UNAVAILABLE');
      return;
    }
    const co = this.#opts.coalesce;
    if (co) co.batch.hold(co.socket);
    this.#ws.send(text);
  }

  send(frame: ServerFrame): void {
    this.sendText(JSON.stringify(frame));
  }

  /** Starts the closing handshake (once). */
  close(code: number, reason: string): void {
    const state = this.#ws.readyState;
    if (state === OPEN || state === CONNECTING) this.#ws.close(code, reason);
  }

  /** Sends an ErrorFrame; closes the connection when the code says so. */
  error(code: ErrorCode, message?: string, ref?: ErrorFrame['ref']): void {
    this.#opts.log({ event: 'error', conn: this.id, code });
    this.send({
      v: PROTOCOL_VERSION,
      type: 'error',
      code,
      message: (message ?? MESSAGES[code] ?? code).slice(0, 200),
      ...(ref === undefined ? {} : { ref }),
    });
    if (ERROR_CODES[code].closes) this.close(ERROR_CODES[code].ws, code);
  }

  /** An error the peer caused: counted, and too many close the connection (1008). */
  protocolError(code: ErrorCode, message?: string, ref?: ErrorFrame['ref']): void {
    this.#protocolErrors++;
    this.error(code, message, ref);
    if (this.#protocolErrors > this.#opts.maxProtocolErrors) {
      this.#opts.log({ event: 'too-many-errors', conn: this.id });
      this.close(WS_CLOSE_POLICY, 'too many protocol errors');
    }
  }

  /** Reports an unexpected failure: a typed code to the peer, the detail to the log only. */
  failure(err: unknown, ref?: ErrorFrame['ref']): void {
    const e = toLatchkeyError(err);
    if (e.code === 'INTERNAL' || e.code === 'UNAVAILABLE') {
      const detail = LatchkeyError.is(err)
        ? e.detail
        : err instanceof Error
          ? err.name
          : typeof err;
      this.#opts.log({ event: 'failure', conn: this.id, code: e.code, detail });
      this.error(e.code, undefined, ref);
    } else {
      this.error(e.code, e.message, ref);
    }
  }

  /** Ends the connection with an error frame of `code` and its close code (kick, expiry). */
  end(code: ErrorCode, message?: string): void {
    this.error(code, message);
    this.close(ERROR_CODES[code].ws, code);
    this.phase = 'closed';
  }

  /**
   * The token checked out: frames are served from now on, bytes count against the
   * participant's bucket, and the connection ends with AUTH_EXPIRED when the token does.
   */
  authenticated(principal: Principal, bytes: ByteLease): void {
    this.phase = 'ready';
    this.principal = principal;
    this.#bytes = bytes;
    // The auth timeout has done its job: an idle connection holds only its expiry timer.
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
    const untilExpiry = principal.expiresAt + CLOCK_TOLERANCE_SECONDS * 1000 - this.#now();
    this.#timers.push(
      setTimeout(
        () => this.error('AUTH_EXPIRED'),
        Math.min(MAX_TIMER_MS, Math.max(0, untilExpiry)),
      ),
    );
  }

  /** The frames pipelined behind auth, in order (once). */
  takeEarly(): string[] {
    const early = this.#early;
    this.#early = [];
    return early;
  }

  /** One heartbeat: a socket that did not answer the previous ping is terminated. */
  heartbeat(): void {
    if (!this.#alive) {
      this.#opts.log({ event: 'heartbeat-timeout', conn: this.id });
      this.#ws.terminate();
      return;
    }
    this.#alive = false;
    try {
      this.#ws.ping();
    } catch {
      this.#ws.terminate();
    }
  }

  /** Closes with 1001 and resolves once closed; terminates a peer silent after `graceMs`. */
  closeGracefully(graceMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#ws.readyState === CLOSED) return resolve();
      const t = setTimeout(() => this.#ws.terminate(), graceMs);
      this.#ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.close(WS_CLOSE_GOING_AWAY, 'going away');
    });
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    this.#alive = true;
    if (!this.#bucket.take() || !this.#opts.ipFrames.takeFrame(this.ip)) {
      this.#rateLimited(1);
      return;
    }
    if (this.#bytes !== undefined && !this.#bytes.bucket.take(rawSize(data))) {
      // Over its byte rate: such frames are large, so the connection is cut off ten times sooner.
      this.#rateLimited(10);
      return;
    }
    if (isBinary) {
      this.protocolError('BAD_FRAME', 'binary frames are not accepted');
      return;
    }
    if (rawSize(data) > this.#opts.maxFrameBytes) {
      // ws enforces maxPayload already; this guards a fragmented message's total as well.
      this.error('TOO_LARGE', 'frame too large');
      return;
    }
    const text = rawText(data);
    if (this.phase === 'authenticating') {
      if (this.#early.length >= MAX_EARLY_FRAMES) {
        this.protocolError('BAD_REQUEST', 'too many frames before ready');
        this.close(WS_CLOSE_POLICY, 'too many frames before ready');
        return;
      }
      this.#early.push(text);
      return;
    }
    this.#opts.onText(this, text);
  }

  /** Refuses a frame over a rate; `weight` refusals count towards cutting the connection off. */
  #rateLimited(weight: number): void {
    const now = this.#now();
    if (now - this.#rateWindowStart > RATE_WINDOW_MS) {
      this.#rateWindowStart = now;
      this.#rateDrops = 0;
    }
    this.#rateDrops += weight;
    if (this.#rateDrops > MAX_RATE_DROPS) {
      this.#opts.log({ event: 'rate-abuse', conn: this.id });
      if (this.principal) this.#opts.onRateAbuse(this.principal, now);
      this.close(WS_CLOSE_POLICY, 'rate limit abuse');
      return;
    }
    this.error('RATE_LIMITED');
  }
}
