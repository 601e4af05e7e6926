/**
 * The key access log to a syslog collector: RFC 5424 messages (packages/keys
 * `formatAccessSyslog`) in octet-counting frames over TLS (RFC 5425: TLS transport, §4.3
 * framing), to `tls://host:port`, the collector's certificate checked against the configured CA
 * and its name (no plaintext, no fallback). One connection; reconnects with exponential backoff.
 *
 * Syslog over TLS has no acknowledgement above TCP (RFC 5425 §4.3). So a record counts as
 * delivered once it was flushed to the socket and the connection then stayed up for `settleMs`
 * (default 2 s): a connection that ends, resets or fails before that has its unsettled records
 * sent again on the next one. A collector that accepted bytes and then loses them itself, or a
 * path that swallows them silently for longer than `settleMs`, is beyond what the protocol can
 * tell (docs/siem.md "Delivery").
 *
 * Memory is bounded: at most `maxPending` records written and unsettled, and nothing more is
 * written while the socket buffers (until 'drain').
 */
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import {
  formatAccessSyslog,
  frameOctetCounted,
  type AccessChainAlgorithm,
  type ChainedAccessRecord,
} from '@latchkey/keys';
import { backoffDelay } from '@latchkey/protocol';
import type { AccessSink, SinkProgress } from './access-stream.ts';

export interface SyslogTarget {
  host: string;
  port: number;
}

/**
 * `tls://host:port` (IPv6 in brackets) as host and port.
 * @throws RangeError for any other scheme (a plaintext `tcp://` or `udp://` is refused) or a
 *   missing port.
 */
export function parseSyslogUrl(url: string): SyslogTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RangeError('syslog URL must look like tls://host:port');
  }
  if (u.protocol !== 'tls:')
    throw new RangeError(
      `syslog URL must be tls://host:port (RFC 5425); ${u.protocol.replace(/:$/, '')}:// would send the log in plaintext`,
    );
  const port = Number(u.port);
  if (u.hostname === '' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new RangeError('syslog URL must look like tls://host:port');
  if (u.pathname !== '' && u.pathname !== '/') throw new RangeError('syslog URL takes no path');
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

export interface SyslogSinkOptions {
  /** `tls://host:port`. */
  url: string;
  /** PEM of the CA(s) the collector's certificate must chain to (the only ones trusted). */
  ca: string | Buffer;
  /** The name the certificate must carry (default the URL's host). */
  servername?: string;
  /** HOSTNAME of the messages (default this machine's name). */
  hostname?: string;
  /** How the log's chain is hashed (sent as `alg`). */
  alg: AccessChainAlgorithm;
  /** How long a written record waits on a live connection before it counts (ms, default 2000). */
  settleMs?: number;
  /** Written, unsettled records at most (default 10,000). */
  maxPending?: number;
  /** Backoff of reconnects (ms): first and longest delay (default 500 and 30,000). */
  backoffMs?: { min: number; max: number };
  /** TLS handshake timeout (ms, default 10 s). */
  connectTimeoutMs?: number;
  /** Connection state lines (never a key or secret). */
  report?: (line: string) => void;
}

interface Pending {
  seq: number;
  /** When it was flushed to the socket (undefined: still buffered). */
  at: number | undefined;
}

/** The syslog sink (an AccessSink for AccessLogTailer). */
export class SyslogAccessSink implements AccessSink {
  readonly name = 'syslog';
  readonly #target: SyslogTarget;
  readonly #opts: SyslogSinkOptions;
  readonly #settleMs: number;
  readonly #maxPending: number;
  readonly #hostname: string;
  #wake: () => void = () => undefined;
  #socket: TLSSocket | undefined;
  #connected = false;
  #needDrain = false;
  #attempt = 0;
  #retry: NodeJS.Timeout | undefined;
  #settleTimer: NodeJS.Timeout | undefined;
  #pending: Pending[] = [];
  #assured = -1;
  #lastWritten = 0;
  #closed = false;
  #lastReport: string | undefined;

  /** @throws RangeError for a malformed or plaintext URL. */
  constructor(opts: SyslogSinkOptions) {
    this.#target = parseSyslogUrl(opts.url);
    this.#opts = opts;
    this.#settleMs = opts.settleMs ?? 2_000;
    this.#maxPending = opts.maxPending ?? 10_000;
    this.#hostname = opts.hostname ?? osHostname();
  }

  setWake(wake: () => void): void {
    this.#wake = wake;
  }

  /** Whether a connection is up (tests, health). */
  get connected(): boolean {
    return this.#connected;
  }

  #report(line: string): void {
    if (line === this.#lastReport) return;
    this.#lastReport = line;
    this.#opts.report?.(`syslog ${this.#opts.url}: ${line}`);
  }

  #connect(): void {
    if (this.#closed || this.#socket !== undefined || this.#retry !== undefined) return;
    const { host, port } = this.#target;
    const servername = this.#opts.servername ?? (isIP(host) === 0 ? host : undefined);
    const socket = connect({
      host,
      port,
      ca: this.#opts.ca,
      // Only the configured CA; the name (or IP address) must match the certificate.
      rejectUnauthorized: true,
      ...(servername === undefined ? {} : { servername }),
      minVersion: 'TLSv1.2',
    });
    this.#socket = socket;
    socket.setTimeout(this.#opts.connectTimeoutMs ?? 10_000, () =>
      socket.destroy(new Error('TLS handshake timed out')),
    );
    socket.once('secureConnect', () => {
      socket.setTimeout(0);
      socket.setKeepAlive(true, 30_000);
      this.#connected = true;
      this.#attempt = 0;
      this.#report('connected');
      this.#wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.#lost(socket, err.code ?? err.message));
    socket.on('end', () => this.#lost(socket, 'closed by the collector'));
    socket.on('close', () => this.#lost(socket, 'closed'));
    // The collector never speaks; anything it sends is ignored.
    socket.on('data', () => undefined);
  }

  /** The connection is gone: unsettled records will be sent again; reconnect after a backoff. */
  #lost(socket: TLSSocket, why: string): void {
    if (this.#socket !== socket) return;
    this.#socket = undefined;
    const wasConnected = this.#connected;
    this.#connected = false;
    this.#needDrain = false;
    socket.destroy();
    this.#pending = [];
    this.#lastWritten = this.#assured;
    if (this.#settleTimer) clearTimeout(this.#settleTimer);
    this.#settleTimer = undefined;
    if (this.#closed) return;
    this.#report(
      `${wasConnected ? 'connection lost' : 'cannot connect'}: ${why} (records after ${this.#assured} go again)`,
    );
    const { min, max } = this.#opts.backoffMs ?? { min: 500, max: 30_000 };
    const delay = backoffDelay(this.#attempt, { baseMs: min, maxMs: max, jitter: 'equal' });
    this.#attempt++;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#connect();
    }, delay);
    this.#retry.unref();
  }

  /** Moves settled records (flushed, and the connection up for settleMs since) to assured. */
  #settle(now: number): void {
    while (this.#pending.length > 0) {
      const p = this.#pending[0];
      if (p === undefined || p.at === undefined || now - p.at < this.#settleMs) break;
      this.#assured = p.seq;
      this.#pending.shift();
    }
    if (this.#settleTimer) clearTimeout(this.#settleTimer);
    this.#settleTimer = undefined;
    const next = this.#pending[0];
    if (next?.at !== undefined) {
      this.#settleTimer = setTimeout(
        () => {
          this.#settleTimer = undefined;
          this.#wake();
        },
        Math.max(0, next.at + this.#settleMs - now) + 5,
      );
      this.#settleTimer.unref();
    }
  }

  deliver(records: readonly ChainedAccessRecord[], taken: number): Promise<SinkProgress> {
    if (this.#assured < 0) {
      this.#assured = taken;
      this.#lastWritten = taken;
    }
    this.#settle(Date.now());
    const socket = this.#socket;
    if (!this.#connected || socket === undefined) {
      this.#connect();
      return Promise.resolve({ assured: this.#assured, taken: this.#assured });
    }
    for (const r of records) {
      if (this.#needDrain || this.#pending.length >= this.#maxPending) break;
      if (r.seq <= this.#lastWritten) continue;
      const entry: Pending = { seq: r.seq, at: undefined };
      this.#pending.push(entry);
      this.#lastWritten = r.seq;
      const frame = frameOctetCounted(
        formatAccessSyslog(r, {
          hostname: this.#hostname,
          procId: process.pid,
          alg: this.#opts.alg,
        }),
      );
      const more = socket.write(frame, (err) => {
        if (err || this.#socket !== socket) return;
        entry.at = Date.now();
        if (this.#settleTimer === undefined) this.#settle(Date.now());
      });
      if (!more) {
        this.#needDrain = true;
        socket.once('drain', () => {
          this.#needDrain = false;
          this.#wake();
        });
      }
    }
    return Promise.resolve({ assured: this.#assured, taken: this.#lastWritten });
  }

  /** Ends the connection; unsettled records are sent again after the next start. */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#settleTimer) clearTimeout(this.#settleTimer);
    const socket = this.#socket;
    this.#socket = undefined;
    this.#connected = false;
    if (!socket) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        socket.destroy();
        resolve();
      }, 1_000);
      timer.unref();
      socket.once('close', done);
      socket.end();
    });
  }
}
