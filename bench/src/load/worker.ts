/**
 * Child process: the load generator. Opens N 1:1 contacts (visitor + agent, two connections
 * each) against one system under test, then runs phases on those connections:
 *  - `window`: every connection keeps `window` messages in flight (sent, not yet delivered to
 *    its peer) and sends the next as soon as one lands: the sustained delivered messages/s;
 *  - `rate`: a fixed offered rate spread over all connections: end-to-end latency.
 * Every message is the same text frame for all three systems: a Latchkey `send` frame whose
 * envelope was sealed for real once per sender (only its msgId varies per message, so it stays
 * schema-valid; the relay checks schemas and metadata, never signatures). Every `sampleEvery`-th
 * message of a `rate` phase is instead sealed at send time and opened (certificate, signature,
 * AES-GCM) at the receiver, for the end-to-end latency that includes client-side crypto.
 */
import { WebSocket } from 'ws';
import { io, type Socket } from 'socket.io-client';
import { mintToken } from '@latchkey/tokens';
import { randomBytes } from '@latchkey/crypto/random';
import type { StoredEnvelope } from '@latchkey/protocol';
import { childConfig, serve } from '../ipc.ts';
import {
  makeParticipant,
  makeServiceKey,
  messageText,
  openText,
  sealText,
  type Participant,
} from './fixtures.ts';
import { percentiles, type Percentiles } from './stats.ts';

export type SystemKind = 'latchkey' | 'ws' | 'socketio';

interface Config {
  kind: SystemKind;
  url: string;
  /**
   * Several servers of one cluster (cluster-bench.ts): connection i goes to `urls[i % n]`, so the
   * two members of a contact (consecutive indexes) sit on different relays. Default `[url]`.
   */
  urls?: string[];
  /** With `urls`: `contacts` puts both members of contact k on `urls[k % n]` instead. */
  spread?: 'members' | 'contacts';
  secretHex: string;
}

export interface ConnectParams {
  contacts: number;
  size: number;
  /** Prefix of contact ids, unique per connect call. */
  prefix: string;
  /** Build message templates (not needed for idle connections). */
  templates: boolean;
  /** Connections opened concurrently. */
  concurrency?: number;
}

export interface RunParams {
  mode: 'window' | 'rate';
  window?: number;
  rate?: number;
  warmupMs: number;
  durationMs: number;
  drainMs: number;
  /** In `rate` mode, seal and open every n-th message for real (0: none). */
  sampleEvery?: number;
}

export interface RunResult {
  sent: number;
  /** Deliveries at the peer within the measurement window. */
  delivered: number;
  deliveredPerSecond: number;
  acked: number;
  /** Error frames, unexpected closes, failed opens and messages never delivered. */
  errors: number;
  errorCodes: Record<string, number>;
  /** Send to delivery at the peer (ms), every message delivered in the window. */
  wire: Percentiles;
  /** Seal at the sender to opened at the peer (ms), sampled messages. */
  e2e: Percentiles;
}

interface Link {
  send(text: string): void;
  close(): void;
}

interface Conn {
  index: number;
  contactId: string;
  participantId: string;
  role: 'visitor' | 'agent';
  peer: Conn | undefined;
  link: Link | undefined;
  participant: Participant | undefined;
  key: Uint8Array;
  /** The send frame text split around the msgId value. */
  before: string;
  after: string;
  counter: number;
  inFlight: number;
}

interface Flight {
  t0: number;
  from: Conn;
  sampled: boolean;
}

const config = childConfig<Config>();
const urls = config.urls ?? [config.url];
const secret = new Uint8Array(Buffer.from(config.secretHex, 'hex'));
const service = makeServiceKey();
let conns: Conn[] = [];
const flights = new Map<string, Flight>();
const errorCodes: Record<string, number> = {};
let errors = 0;
let acked = 0;
let closing = false;

/** The measuring state of the current phase. */
const phase = {
  running: false,
  mode: 'rate' as RunParams['mode'],
  window: 0,
  measureFrom: 0,
  measureTo: 0,
  delivered: 0,
  wire: [] as number[],
  e2e: [] as number[],
};

function error(code: string): void {
  errors++;
  errorCodes[code] = (errorCodes[code] ?? 0) + 1;
}

function msgIdOf(text: string): string | undefined {
  const i = text.indexOf('"msgId":"');
  if (i < 0) return undefined;
  const start = i + 9;
  return text.slice(start, text.indexOf('"', start));
}

function onText(c: Conn, text: string): void {
  if (text.startsWith('{"v":1,"type":"ack"')) {
    acked++;
    return;
  }
  if (text.startsWith('{"v":1,"type":"error"')) {
    const m = /"code":"([A-Z_]+)"/.exec(text);
    error(m?.[1] ?? 'ERROR');
    return;
  }
  // A Latchkey `deliver`, or the forwarded `send` frame of the floor and Socket.IO.
  const msgId = msgIdOf(text);
  if (msgId === undefined) return;
  const f = flights.get(msgId);
  if (!f) return;
  flights.delete(msgId);
  const now = performance.now();
  if (now >= phase.measureFrom && now < phase.measureTo) {
    phase.delivered++;
    phase.wire.push(now - f.t0);
  }
  f.from.inFlight--;
  if (f.sampled) {
    const frame = JSON.parse(text) as { envelope: StoredEnvelope };
    openText(frame.envelope, c.key, service.publicKey).then(
      () => {
        const done = performance.now();
        if (done >= phase.measureFrom && done < phase.measureTo) phase.e2e.push(done - f.t0);
      },
      () => error('OPEN_FAILED'),
    );
  }
  if (phase.running && phase.mode === 'window' && f.from.inFlight < phase.window) sendOne(f.from);
}

function sendOne(c: Conn): void {
  if (!c.link) return;
  const msgId = `m${c.index.toString(36).padStart(5, '0')}_${(c.counter++).toString(36).padStart(10, '0')}`;
  flights.set(msgId, { t0: performance.now(), from: c, sampled: false });
  c.inFlight++;
  c.link.send(c.before + msgId + c.after);
}

let textCache = '';
async function sendSealed(c: Conn): Promise<void> {
  if (!c.link || !c.participant) return;
  const t0 = performance.now();
  const msgId = `s${c.index.toString(36).padStart(5, '0')}_${(c.counter++).toString(36).padStart(10, '0')}`;
  c.inFlight++;
  const envelope = await sealText(c.participant, c.key, textCache, msgId);
  flights.set(msgId, { t0, from: c, sampled: true });
  c.link.send(JSON.stringify({ v: 1, type: 'send', envelope }));
}

/** Opens one connection of the system under test; resolves once it can send. */
function openLink(
  c: Conn,
  contactId: string,
  participantId: string,
  role: 'visitor' | 'agent',
): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    const fail = (why: string): void =>
      reject(new Error(`${config.kind} connection ${c.index}: ${why}`));
    const onClose = (): void => {
      if (!closing) error('CLOSED');
    };
    if (config.kind === 'socketio') {
      const s: Socket = io(config.url, {
        transports: ['websocket'],
        query: { room: contactId },
        forceNew: true,
        reconnection: false,
      });
      s.on('connect', () => resolve({ send: (t) => s.emit('m', t), close: () => s.close() }));
      s.on('connect_error', (e) => fail(e.message));
      s.on('m', (t: string) => onText(c, t));
      s.on('disconnect', onClose);
      return;
    }
    const slot = config.spread === 'contacts' ? Math.floor(c.index / 2) : c.index;
    const base = urls[slot % urls.length] ?? config.url;
    const url = config.kind === 'ws' ? `${base}/?room=${contactId}` : base;
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const link: Link = { send: (t) => ws.send(t), close: () => ws.close() };
    ws.on('error', (e) => fail(e.message));
    ws.on('close', onClose);
    if (config.kind === 'ws') {
      ws.on('open', () => resolve(link));
      ws.on('message', (d) => onText(c, (d as Buffer).toString('utf8')));
      return;
    }
    let ready = false;
    ws.on('open', () => {
      void mintToken(secret, { contactId, participantId, role, ttlSeconds: 3600 }).then((token) =>
        ws.send(JSON.stringify({ v: 1, type: 'auth', token })),
      );
    });
    ws.on('message', (d) => {
      const text = (d as Buffer).toString('utf8');
      if (ready) {
        onText(c, text);
        return;
      }
      if (text.startsWith('{"v":1,"type":"ready"'))
        ws.send(JSON.stringify({ v: 1, type: 'join', since: 0 }));
      else if (text.startsWith('{"v":1,"type":"joined"')) {
        ready = true;
        resolve(link);
      } else fail(text.slice(0, 200));
    });
  });
}

async function connect(p: ConnectParams): Promise<{ connections: number; ms: number }> {
  const t0 = performance.now();
  textCache = messageText(p.size);
  const fresh: Conn[] = [];
  for (let i = 0; i < p.contacts; i++) {
    const contactId = `${p.prefix}-c${i}`;
    const key = randomBytes(32);
    const mk = (participantId: string, role: 'visitor' | 'agent'): Conn => ({
      index: conns.length + fresh.length,
      contactId,
      participantId,
      role,
      peer: undefined,
      link: undefined,
      participant: p.templates
        ? makeParticipant(service, contactId, participantId, role)
        : undefined,
      key,
      before: '',
      after: '',
      counter: 0,
      inFlight: 0,
    });
    const v = mk(`v${i}`, 'visitor');
    fresh.push(v);
    const a = mk(`a${i}`, 'agent');
    fresh.push(a);
    v.peer = a;
    a.peer = v;
  }
  if (p.templates) {
    const marker = 'MSGIDMSGIDMSGIDMSGID';
    for (const c of fresh) {
      const envelope = await sealText(c.participant!, c.key, textCache, marker);
      const text = JSON.stringify({ v: 1, type: 'send', envelope });
      const at = text.indexOf(marker);
      c.before = text.slice(0, at);
      c.after = text.slice(at + marker.length);
    }
  }
  const concurrency = p.concurrency ?? 100;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < fresh.length) {
      const c = fresh[next++]!;
      c.link = await openLink(c, c.contactId, c.participantId, c.role);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  conns = conns.concat(fresh);
  return { connections: fresh.length, ms: Math.round(performance.now() - t0) };
}

async function run(p: RunParams): Promise<RunResult> {
  const active = conns.filter((c) => c.before !== '');
  const errors0 = errors;
  const acked0 = acked;
  const codes0 = { ...errorCodes };
  const counted0 = active.reduce((n, c) => n + c.counter, 0);
  const start = performance.now();
  let sent = 0;
  Object.assign(phase, {
    running: true,
    mode: p.mode,
    window: p.window ?? 1,
    measureFrom: start + p.warmupMs,
    measureTo: start + p.warmupMs + p.durationMs,
    delivered: 0,
    wire: [],
    e2e: [],
  });
  const end = start + p.warmupMs + p.durationMs;
  if (p.mode === 'window') {
    for (const c of active) for (let i = 0; i < phase.window; i++) sendOne(c);
    sent = -1;
    await new Promise((r) => setTimeout(r, end - performance.now()));
  } else {
    const rate = p.rate ?? 1000;
    let rr = 0;
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - start) * rate) / 1000) - sent;
      for (let i = 0; i < due; i++) {
        const c = active[rr++ % active.length]!;
        if (p.sampleEvery && sent % p.sampleEvery === 0) void sendSealed(c);
        else sendOne(c);
        sent++;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  phase.running = false;
  const drainUntil = performance.now() + p.drainMs;
  while (flights.size > 0 && performance.now() < drainUntil)
    await new Promise((r) => setTimeout(r, 20));
  const lost = flights.size;
  for (let i = 0; i < lost; i++) error('NOT_DELIVERED');
  flights.clear();
  for (const c of active) c.inFlight = 0;
  await new Promise((r) => setTimeout(r, 50)); // let pending opens finish
  const codes: Record<string, number> = {};
  for (const [k, n] of Object.entries(errorCodes))
    if (n - (codes0[k] ?? 0) > 0) codes[k] = n - (codes0[k] ?? 0);
  const secondsMeasured = p.durationMs / 1000;
  return {
    sent: sent < 0 ? active.reduce((n, c) => n + c.counter, 0) - counted0 : sent,
    delivered: phase.delivered,
    deliveredPerSecond: Math.round(phase.delivered / secondsMeasured),
    acked: acked - acked0,
    errors: errors - errors0,
    errorCodes: codes,
    wire: percentiles(phase.wire),
    e2e: percentiles(phase.e2e),
  };
}

serve(
  { pid: process.pid },
  {
    connect: (p: ConnectParams) => connect(p),
    run: (p: RunParams) => run(p),
  },
  async () => {
    closing = true;
    for (const c of conns) c.link?.close();
    await new Promise((r) => setTimeout(r, 200));
  },
);
