/**
 * Quotas against a flooding visitor (issue 13 item 9), over a real WebSocket on 127.0.0.1 and a
 * real SQLite file: one visitor token floods its contact from several connections as fast as the
 * relay lets it; it must hit QUOTA_EXCEEDED with the stored bytes capped, while another contact's
 * send-to-ack round trip stays within 2x of what it was without the flood (a ratio of medians
 * measured in the same run, never an absolute time).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ENVELOPE_ALG } from '@latchkey/protocol';
import { createRelay, SqliteMessageStore, type Relay, type RelayOptions } from '../src/index.ts';
import { SECRET, TestClient, fakeEnvelope, token } from './_helpers.ts';

let dir: string;
let store: SqliteMessageStore;
let relay: Relay | undefined;
let url: string;
const clients: TestClient[] = [];

async function start(over: Partial<RelayOptions> = {}): Promise<void> {
  relay = createRelay({ store, apiSecret: SECRET, ...over });
  ({ url } = await relay.listen({ host: '127.0.0.1', port: 0 }));
}

async function as(
  contactId: string,
  participantId: string,
  role: 'visitor' | 'agent' = 'visitor',
): Promise<TestClient> {
  const c = await TestClient.as(url, contactId, participantId, role);
  clients.push(c);
  return c;
}

/** Bytes and messages stored for a contact, read straight from the database file. */
function stored(contactId: string): { bytes: number; messages: number } {
  const db = new Database(join(dir, 'messages.db'), { readonly: true });
  try {
    return db
      .prepare<[string], { bytes: number; messages: number }>(
        'SELECT coalesce(sum(length(CAST(envelope AS BLOB))), 0) AS bytes, count(*) AS messages FROM messages WHERE contact_id = ?',
      )
      .get(contactId) as { bytes: number; messages: number };
  } finally {
    db.close();
  }
}

/** Median send-to-ack time of `n` sequential sends by `c` (ms). */
async function medianRoundTrip(
  c: TestClient,
  contactId: string,
  sender: string,
  n: number,
): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const e = fakeEnvelope(contactId, sender);
    const t0 = performance.now();
    c.sendEnvelope(e);
    const ack = await c.next('ack', 10_000);
    times.push(performance.now() - t0);
    expect(ack.msgId).toBe(e.msgId);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)] as number;
}

/**
 * The flood script, run in a process of its own (an attacker's machine does not share the
 * relay's event loop): `conns` connections of one token, each keeping `window` of the largest
 * envelopes the protocol accepts in flight and sending the next as soon as any answer (ack or
 * error) comes back; a connection the relay closes is opened again 50 ms later (the flooder
 * shares this machine's cores with the relay, a real one does not). Prints its answer counts as
 * one JSON line every 50 ms.
 */
const FLOOD_SCRIPT = `
const { randomBytes } = require('node:crypto');
const { WebSocket } = require(process.env.WS_PATH);
const a = JSON.parse(process.argv[1]);
const counts = { ack: 0, quota: 0, rateLimited: 0, other: 0, reconnects: 0 };
const b64 = (n) => randomBytes(n).toString('base64url');
const big = 'A'.repeat(40000);
function frame() {
  return JSON.stringify({ v: 1, type: 'send', envelope: { v: 2, alg: a.alg, contactId: a.contactId, epoch: 0,
    senderId: a.sender, msgId: b64(16), sentAt: Date.now(), ctr: 1, prev: b64(32), seenSeq: 0, seenHash: b64(32),
    nonce: b64(12), ciphertext: big, sig: b64(64), cert: { body: b64(60), sig: b64(64) } } });
}
function open() {
  const ws = new WebSocket(a.url);
  ws.on('error', () => {});
  ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'auth', token: a.token })));
  ws.on('message', (d) => {
    const f = JSON.parse(String(d));
    if (f.type === 'ready') { for (let i = 0; i < a.window; i++) ws.send(frame()); return; }
    if (f.type === 'ack') counts.ack++;
    else if (f.code === 'QUOTA_EXCEEDED') counts.quota++;
    else if (f.code === 'RATE_LIMITED') counts.rateLimited++;
    else counts.other++;
    if (ws.readyState === 1) ws.send(frame());
  });
  ws.on('close', () => { counts.reconnects++; setTimeout(open, 50); });
}
for (let i = 0; i < a.conns; i++) open();
setInterval(() => process.stdout.write(JSON.stringify(counts) + '\\n'), 50);
`;

interface FloodCounts {
  ack: number;
  quota: number;
  rateLimited: number;
  other: number;
  reconnects: number;
}

/** Starts the flood process against contact `contactId` as visitor `sender`. */
async function flood(contactId: string, sender: string, conns: number, window: number) {
  const args = {
    url,
    token: await token(contactId, sender),
    alg: ENVELOPE_ALG,
    contactId,
    sender,
    conns,
    window,
  };
  const child = spawn(process.execPath, ['-e', FLOOD_SCRIPT, JSON.stringify(args)], {
    env: { ...process.env, WS_PATH: createRequire(import.meta.url).resolve('ws') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const state: { counts: FloodCounts } = {
    counts: { ack: 0, quota: 0, rateLimited: 0, other: 0, reconnects: 0 },
  };
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    const last = lines.at(-1);
    if (last) state.counts = JSON.parse(last) as FloodCounts;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    get counts() {
      return state.counts;
    },
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Resolves once `cond` holds, checking on every event-loop turn (at most `ms`). */
async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise<void>((r) => setTimeout(r, 10));
  }
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-quota-'));
  store = new SqliteMessageStore({ path: join(dir, 'messages.db') });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await relay?.close();
  relay = undefined;
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('relay: quotas against a flooding visitor', () => {
  it('a flood from one visitor hits QUOTA_EXCEEDED, stored bytes stop growing, another contact stays within 2x', async () => {
    const participantBytes = 512 * 1024;
    await start({
      quota: {
        participantBytes,
        participantMessages: 1000,
        contactBytes: 2 * participantBytes,
        contactMessages: 2000,
      },
    });
    const other = await as('quiet', 'visitor-q');
    // Warm up, then the baseline without the flood.
    await medianRoundTrip(other, 'quiet', 'visitor-q', 5);
    const before = await medianRoundTrip(other, 'quiet', 'visitor-q', 30);

    const f = await flood('loud', 'visitor-l', 4, 8);
    try {
      await until(
        () => f.counts.quota >= 10,
        20_000,
        () =>
          `QUOTA_EXCEEDED answers: flood answers ${JSON.stringify(f.counts)}, stored ${JSON.stringify(stored('loud'))}`,
      );
      // Measured in the flood's steady state: every flood connection has been cut off at least
      // once and keeps coming back.
      await until(
        () => f.counts.reconnects >= 8,
        20_000,
        () => `the flood's connections to be cut off: ${JSON.stringify(f.counts)}`,
      );
      const capped = stored('loud');
      expect(capped.bytes).toBeLessThanOrEqual(participantBytes);
      const during = await medianRoundTrip(other, 'quiet', 'visitor-q', 30);
      const later = stored('loud');
      // Nothing more was stored while the flood went on.
      expect(later).toEqual(capped);
      const ratio = during / before;
      console.log(
        `quota flood: baseline ${before.toFixed(2)} ms, during flood ${during.toFixed(2)} ms, ratio ${ratio.toFixed(2)}; ` +
          `flood answers ${JSON.stringify(f.counts)}, stored ${later.bytes} bytes in ${later.messages} messages`,
      );
      expect(ratio).toBeLessThanOrEqual(2);
    } finally {
      await f.stop();
    }
  }, 60_000);
});
