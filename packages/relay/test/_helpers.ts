/**
 * Test helpers: schema-valid fake envelopes (random bytes of the right lengths — the relay never
 * opens them), a WebSocket test client that queues server frames, and token minting.
 */
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import {
  ENVELOPE_ALG,
  ENVELOPE_VERSION,
  ServerFrame,
  type Role,
  type SealedEnvelope,
} from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';

export const SECRET = new Uint8Array(32).fill(42);

const b64 = (n: number): string => randomBytes(n).toString('base64url');

export function fakeEnvelope(
  contactId: string,
  senderId: string,
  over: Partial<SealedEnvelope> = {},
): SealedEnvelope {
  return {
    v: ENVELOPE_VERSION,
    alg: ENVELOPE_ALG,
    contactId,
    epoch: 0,
    senderId,
    msgId: b64(16),
    sentAt: Date.now(),
    ctr: 1,
    prev: b64(32),
    seenSeq: 0,
    seenHash: b64(32),
    nonce: b64(12),
    ciphertext: b64(40),
    sig: b64(64),
    cert: { body: b64(60), sig: b64(64) },
    ...over,
  };
}

export function token(
  contactId: string,
  participantId: string,
  role: Role = 'visitor',
  extra: { now?: number; ttlSeconds?: number } = {},
): Promise<string> {
  return mintToken(SECRET, {
    contactId,
    participantId,
    role,
    ttlSeconds: extra.ttlSeconds ?? 600,
    ...(extra.now === undefined ? {} : { now: extra.now }),
  });
}

type Frame = ServerFrame;
type FrameOf<T extends Frame['type']> = Extract<Frame, { type: T }>;

export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  /** Every frame ever received, in order. */
  readonly log: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: (() => void)[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data) => {
      const frame = ServerFrame.parse(JSON.parse(String(data)));
      this.frames.push(frame);
      this.log.push(frame);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const w of this.#waiters.splice(0)) w();
      });
    });
    ws.on('error', () => undefined);
  }

  static open(url: string): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const c = new TestClient(ws);
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
  }

  /** Opens, authenticates and waits for `ready`. */
  static async as(
    url: string,
    contactId: string,
    participantId: string,
    role: Role = 'visitor',
  ): Promise<TestClient> {
    const c = await TestClient.open(url);
    c.send({ v: 1, type: 'auth', token: await token(contactId, participantId, role) });
    await c.next('ready');
    return c;
  }

  send(frame: object | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  sendEnvelope(env: SealedEnvelope): void {
    this.send({ v: 1, type: 'send', envelope: env });
  }

  /** Removes and returns the first queued frame of `type`, waiting up to `ms` for one. */
  async next<T extends Frame['type']>(type: T, ms = 3000): Promise<FrameOf<T>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0] as FrameOf<T>;
      if (this.ws.readyState === WebSocket.CLOSED)
        throw new Error(`closed while waiting for ${type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${type}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for `n` frames of `type` and returns them in order. */
  async take<T extends Frame['type']>(type: T, n: number, ms = 5000): Promise<FrameOf<T>[]> {
    const out: FrameOf<T>[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(type, ms));
    return out;
  }

  close(): void {
    this.ws.close();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
