/**
 * One TLS connection of the KMIP client (client.ts) and the single request in flight on it:
 * mutual TLS trusting only the configured CA, TTLV framing with a size limit, a per-request
 * timeout. Failures are LatchkeyError KEY_UNAVAILABLE.
 */
/** One TLS connection and the single request in flight on it. */
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { LatchkeyError } from '@latchkey/protocol';
import { TAG } from './tags.ts';
import { TtlvError, ttlvFrameLength } from './ttlv.ts';

const DEFAULT_PORT = 5696;

export interface KmipClientOptions {
  /** Host name or IP address of the KMIP server. */
  host: string;
  /** Default 5696 (IANA port of KMIP). */
  port?: number;
  /** PEM of the CA that issues the server certificate; the only trust anchor used. */
  ca: string | Uint8Array;
  /** PEM client certificate and its private key: the client's identity to the server. */
  cert: string | Uint8Array;
  key: string | Uint8Array;
  /** Name the server certificate must carry (default `host`). */
  servername?: string;
  /** Per request, connecting included (default 10 000 ms). */
  timeoutMs?: number;
  /** Largest response accepted, in bytes (default 1 MiB). */
  maxResponseBytes?: number;
  /** Protocol version sent in every request (default 1.4). */
  protocolVersion?: { major: number; minor: number };
}

export const unavailable = (message: string, err?: unknown): LatchkeyError =>
  LatchkeyError.is(err)
    ? err
    : new LatchkeyError('KEY_UNAVAILABLE', message, {
        ...(err === undefined
          ? {}
          : { cause: err, detail: err instanceof Error ? err.message : String(err) }),
      });

export class Connection {
  private buf = new Uint8Array(0);
  private waiting: { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void } | undefined;
  private failure: unknown;
  /** Whether a response ever arrived: a connection that has answered before may simply have gone stale. */
  used = false;

  private constructor(
    private readonly socket: TLSSocket,
    private readonly maxBytes: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed by the KMIP server')));
  }

  static open(opts: KmipClientOptions, timeoutMs: number, maxBytes: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect({
        host: opts.host,
        port: opts.port ?? DEFAULT_PORT,
        ca: [Buffer.from(opts.ca)],
        cert: Buffer.from(opts.cert),
        key: Buffer.from(opts.key),
        // Node checks the certificate against `servername ?? host` (an IP against IP SANs);
        // SNI itself is only sent for names.
        ...(opts.servername !== undefined
          ? { servername: opts.servername }
          : isIP(opts.host)
            ? {}
            : { servername: opts.host }),
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`TLS connection not established within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        resolve(new Connection(socket, maxBytes));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  get alive(): boolean {
    return this.failure === undefined && !this.socket.destroyed;
  }

  private fail(err: unknown): void {
    if (this.failure === undefined) this.failure = err;
    this.socket.destroy();
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(err);
  }

  private onData(chunk: Buffer): void {
    if (this.waiting === undefined) {
      this.fail(new Error('KMIP server sent bytes nobody asked for'));
      return;
    }
    if (this.buf.length + chunk.length > this.maxBytes) {
      this.fail(new TtlvError('TOO_LARGE', `response exceeds ${this.maxBytes} bytes`));
      return;
    }
    const next = new Uint8Array(this.buf.length + chunk.length);
    next.set(this.buf);
    next.set(chunk, this.buf.length);
    this.buf = next;
    let total: number | undefined;
    try {
      total = ttlvFrameLength(this.buf, TAG.ResponseMessage, this.maxBytes);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (total === undefined || this.buf.length < total) return;
    if (this.buf.length > total) {
      this.fail(new Error('KMIP server sent more than one response'));
      return;
    }
    const frame = this.buf;
    this.buf = new Uint8Array(0);
    const w = this.waiting;
    this.waiting = undefined;
    this.used = true;
    w.resolve(frame);
  }

  /** Sends one request and waits for one response frame. */
  exchange(request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (!this.alive) return Promise.reject(this.failure ?? new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new Error(`no KMIP response within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiting = {
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.socket.write(request);
    });
  }

  close(): void {
    this.fail(new Error('client closed'));
  }
}
