/**
 * A client of clamd's socket protocol (clamd(8) "COMMANDS"; ClamAV's docs "Scanning: clamd"):
 * `zINSTREAM\0`, then the bytes as chunks each prefixed with its length (4 bytes, big-endian),
 * then a zero-length chunk; clamd answers one NUL-terminated line, `stream: OK`,
 * `stream: NAME FOUND`, or `... ERROR`. It never writes what it sends to disk, and sends no more
 * than `streamMaxLength` (clamd's StreamMaxLength: beyond it clamd stops reading and answers
 * `INSTREAM size limit exceeded. ERROR`), so an over-long stream is cut here first.
 *
 * clamd unreachable (no socket, refused, connection lost before its answer, no answer in time)
 * is `ClamdUnreachableError`, which the caller may retry; every answer clamd gives is a result.
 */
import { connect, type Socket } from 'node:net';

/** Where clamd listens: its LocalSocket, or its TCPSocket/TCPAddr. */
export type ClamdAddress = { path: string } | { host: string; port: number };

/**
 * Parses `unix:/path`, an absolute path, or `tcp://host:port`.
 * @throws TypeError naming the accepted forms.
 */
export function parseClamdAddress(text: string): ClamdAddress {
  const path = text.startsWith('unix:') ? text.slice(5) : text;
  if (path.startsWith('/') && path.length > 1 && !path.includes('\0')) return { path };
  const m = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (m && Number(m[2]) >= 1 && Number(m[2]) <= 65535)
    return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  throw new TypeError('clamd address must be unix:/path, /path or tcp://host:port');
}

/** What clamd said of one stream. */
export type ClamdResult =
  | { status: 'clean' }
  | { status: 'infected'; signature: string }
  /**
   * clamd could not judge it: `TOO_LARGE` (over StreamMaxLength, here or in clamd), or
   * `CLAMD_ERROR` (clamd answered an error, or something it should not).
   */
  | { status: 'error'; code: 'TOO_LARGE' | 'CLAMD_ERROR'; detail: string };

/** clamd could not be reached, or went away before it answered: worth another try later. */
export class ClamdUnreachableError extends Error {
  override readonly name = 'ClamdUnreachableError';
  /** A code for logs: the system error (ENOENT, ECONNREFUSED, ...), CLOSED or TIMEOUT. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export interface ClamdOptions {
  address: ClamdAddress;
  /** clamd's StreamMaxLength (bytes); a longer stream is cut and judged TOO_LARGE. Default 25 MiB. */
  streamMaxLength?: number;
  /** Largest chunk written at once (bytes, default 64 KiB). */
  chunkBytes?: number;
  /** Longest wait for the connection, each write and a command's answer (ms, default 30 s). */
  timeoutMs?: number;
  /** Longest wait for clamd's judgement once the stream is sent (ms, default 120 s). */
  scanTimeoutMs?: number;
}

/** clamd's own default StreamMaxLength. */
export const CLAMD_DEFAULT_STREAM_MAX = 25 * 1024 * 1024;
/** Longest answer line read (a signature name and a status fit many times over). */
const MAX_REPLY_BYTES = 4096;
/** Longest signature name passed on (VerdictBody `signature`). */
const MAX_SIGNATURE = 200;

/**
 * Parses clamd's answer to INSTREAM (without its NUL).
 * Signature names keep printable ASCII only, at most 200 characters.
 */
export function parseInstreamReply(line: string): ClamdResult {
  const text = line.replace(/\0+$/, '').trim();
  if (text === 'stream: OK') return { status: 'clean' };
  const found = /^stream: (.+) FOUND$/.exec(text);
  if (found) {
    const signature = (found[1] as string).replace(/[^\x21-\x7e]/g, '_').slice(0, MAX_SIGNATURE);
    return { status: 'infected', signature };
  }
  const detail = printable(text);
  if (/size limit exceeded/i.test(text)) return { status: 'error', code: 'TOO_LARGE', detail };
  return { status: 'error', code: 'CLAMD_ERROR', detail };
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/** The chunks of a stream of bytes, whichever form it comes in. */
export type ByteSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

function iterate(source: ByteSource): AsyncIterator<Uint8Array> {
  if (Symbol.asyncIterator in source) return source[Symbol.asyncIterator]();
  const reader = source.getReader();
  return {
    next: () => reader.read() as Promise<IteratorResult<Uint8Array>>,
    return: async () => {
      await reader.cancel().catch(() => undefined);
      return { done: true, value: undefined };
    },
  };
}

type Settled = { line: string } | { cut: string } | { error: ClamdUnreachableError };

/** One connection to clamd and its answer, read as it comes. */
class Conversation {
  readonly #socket: Socket;
  readonly #timeoutMs: number;
  readonly #reply: Buffer[] = [];
  #replyBytes = 0;
  #settled: Settled | undefined;
  /** True while the stream's chunks are being written (INSTREAM sent, terminator not yet). */
  streaming = false;
  readonly #waiters = new Set<() => void>();

  private constructor(socket: Socket, timeoutMs: number) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    socket.on('data', (d: Buffer) => this.#data(d));
    socket.on('end', () => this.#end());
    socket.on('close', () => this.#end());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'CLOSED';
      if (this.streaming) this.#settle({ cut: code });
      else
        this.#settle({
          error: new ClamdUnreachableError(code, 'clamd connection failed', { cause: err }),
        });
    });
  }

  static open(address: ClamdAddress, timeoutMs: number): Promise<Conversation> {
    return new Promise((resolve, reject) => {
      const socket =
        'path' in address ? connect(address.path) : connect(address.port, address.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ClamdUnreachableError('TIMEOUT', 'clamd did not accept the connection in time'));
      }, timeoutMs);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new ClamdUnreachableError(err.code ?? 'CLOSED', 'clamd unreachable', { cause: err }),
        );
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new Conversation(socket, timeoutMs));
      });
    });
  }

  /** The answer so far, when clamd has finished it (or failed). */
  get answered(): boolean {
    return this.#settled !== undefined;
  }

  #data(d: Buffer): void {
    if (this.#settled) return;
    this.#reply.push(d);
    this.#replyBytes += d.length;
    const all = Buffer.concat(this.#reply);
    const nul = all.indexOf(0);
    if (nul >= 0) this.#settle({ line: all.subarray(0, nul).toString('latin1') });
    else if (this.#replyBytes > MAX_REPLY_BYTES)
      this.#settle({ line: all.subarray(0, MAX_REPLY_BYTES).toString('latin1') });
  }

  #end(): void {
    if (this.#settled) return;
    if (this.#replyBytes > 0) this.#settle({ line: Buffer.concat(this.#reply).toString('latin1') });
    else if (this.streaming) this.#settle({ cut: 'CLOSED' });
    else
      this.#settle({
        error: new ClamdUnreachableError('CLOSED', 'clamd closed without an answer'),
      });
  }

  #settle(s: Settled): void {
    if (this.#settled) return;
    this.#settled = s;
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  /** Resolves when `ready()` holds or clamd answered (or failed); rejects when the time is up. */
  #wait(ready: (() => boolean) | null, what: string, timeoutMs = this.#timeoutMs): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#settled || ready?.()) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(done);
        reject(new ClamdUnreachableError('TIMEOUT', `clamd did not ${what} in time`));
      }, timeoutMs);
      this.#waiters.add(done);
    });
  }

  /**
   * Writes and waits until the bytes reached the socket, then lets pending reads run, so that
   * an answer clamd gave early (it stops reading at its StreamMaxLength, answers and closes) is
   * seen before the next write instead of being lost to the write's EPIPE.
   */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#settled) return;
    let flushed = false;
    this.#socket.write(bytes, () => {
      flushed = true;
      for (const w of this.#waiters) w();
    });
    await this.#wait(() => flushed, 'read');
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /**
   * clamd's answer line, or `cut` when clamd closed the connection while the stream was still
   * being sent (it stops reading at its own StreamMaxLength and closes; the write that follows
   * fails with EPIPE or ECONNRESET, which can come before its answer is read).
   * @throws ClamdUnreachableError when there is neither.
   */
  async answer(timeoutMs?: number): Promise<{ line: string } | { cut: string }> {
    await this.#wait(null, 'answer', timeoutMs);
    const s = this.#settled;
    if (!s) throw new ClamdUnreachableError('TIMEOUT', 'clamd did not answer in time');
    if ('error' in s) throw s.error;
    return s;
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** A clamd client: one connection per command (clamd closes after each z-command). */
export class ClamdClient {
  readonly address: ClamdAddress;
  readonly streamMaxLength: number;
  readonly #chunk: number;
  readonly #timeoutMs: number;
  readonly #scanTimeoutMs: number;

  /** @throws RangeError on a non-positive limit. */
  constructor(opts: ClamdOptions) {
    this.address = opts.address;
    this.streamMaxLength = opts.streamMaxLength ?? CLAMD_DEFAULT_STREAM_MAX;
    this.#chunk = opts.chunkBytes ?? 64 * 1024;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#scanTimeoutMs = opts.scanTimeoutMs ?? 120_000;
    for (const [name, v] of [
      ['streamMaxLength', this.streamMaxLength],
      ['chunkBytes', this.#chunk],
      ['timeoutMs', this.#timeoutMs],
      ['scanTimeoutMs', this.#scanTimeoutMs],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1)
        throw new RangeError(`${name} must be a positive integer`);
    }
  }

  /**
   * Streams `source` to clamd (INSTREAM) and returns its judgement. The source is read once,
   * as clamd takes it; a source over `streamMaxLength` is cut there (cancelled) and TOO_LARGE.
   * @throws ClamdUnreachableError when clamd cannot be reached or gives no answer.
   * @throws whatever the source throws (e.g. LatchkeyError DECRYPT_FAILED): nothing is judged.
   */
  async scan(source: ByteSource): Promise<ClamdResult> {
    const it = iterate(source);
    let c: Conversation;
    try {
      c = await Conversation.open(this.address, this.#timeoutMs);
    } catch (err) {
      // Nothing was read: let the source release what it holds (a download, a decryptor).
      await it.return?.().catch(() => undefined);
      throw err;
    }
    let finished = false;
    try {
      await c.write(Buffer.from('zINSTREAM\0', 'latin1'));
      c.streaming = true;
      let sent = 0;
      for (;;) {
        if (c.answered) break;
        const r = await it.next();
        if (r.done) {
          finished = true;
          break;
        }
        const bytes = r.value;
        if (sent + bytes.length > this.streamMaxLength) {
          return {
            status: 'error',
            code: 'TOO_LARGE',
            detail: `stream over StreamMaxLength ${this.streamMaxLength}`,
          };
        }
        sent += bytes.length;
        for (let off = 0; off < bytes.length && !c.answered; off += this.#chunk) {
          const part = bytes.subarray(off, Math.min(bytes.length, off + this.#chunk));
          const head = Buffer.alloc(4);
          head.writeUInt32BE(part.length, 0);
          await c.write(head);
          await c.write(part);
        }
      }
      if (finished) await c.write(Buffer.alloc(4));
      c.streaming = false;
      const a = await c.answer(this.#scanTimeoutMs);
      if ('line' in a) return parseInstreamReply(a.line);
      return {
        status: 'error',
        code: 'CLAMD_ERROR',
        detail: `clamd closed the stream before its end (${a.cut}): is its StreamMaxLength below ${this.streamMaxLength}?`,
      };
    } finally {
      if (!finished) await it.return?.().catch(() => undefined);
      c.close();
    }
  }

  /** clamd's version line (`ClamAV 1.4.3/DB/DATE`), for a verdict's `engine`. */
  async version(): Promise<string> {
    return printable((await this.#command('zVERSION\0')).trim());
  }

  /** True when clamd answers PING. */
  async ping(): Promise<boolean> {
    try {
      return (await this.#command('zPING\0')).trim() === 'PONG';
    } catch {
      return false;
    }
  }

  async #command(cmd: string): Promise<string> {
    const c = await Conversation.open(this.address, this.#timeoutMs);
    try {
      await c.write(Buffer.from(cmd, 'latin1'));
      const a = await c.answer();
      if ('line' in a) return a.line;
      throw new ClamdUnreachableError(a.cut, 'clamd closed without an answer');
    } finally {
      c.close();
    }
  }
}
