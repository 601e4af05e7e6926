/**
 * Self-test of the attack tools (issue 13): the man-in-the-middle relay and the messages.db
 * editor do what they say against the real relay and clients. These test the tools, not the
 * protocol's defences (hostile-relay.test.ts and db-attacks.test.ts do): what the proxy sent on
 * (its `sent` log: frames, seqs, envelopes, heads, acks, cursors) compared with what the relay
 * sent it (`seen`), and what the editor wrote, read back from the rows and through the relay's
 * own `history` frames on a socket of their own. Clients only make and take the traffic; how
 * they show it is not asserted. Every wait is for an event or a logged frame, never a sleep.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LatchkeyClient } from '@latchkey/client';
import { LatchkeyError } from '@latchkey/protocol';
import { STORE_SCHEMA_VERSION } from '@latchkey/relay';
import { startRelay } from '@latchkey/relay-app';
import { deriveAdminKey } from '@latchkey/tokens';
import { startStack, until, type Stack } from './harness.ts';
import { MESSAGES_DB_SCHEMA_VERSION, MessagesDb } from './messages-db.ts';
import {
  act,
  startMitmRelay,
  type Envelope,
  type Frame,
  type LoggedFrame,
  type MitmConnection,
  type MitmRelay,
} from './mitm-relay.ts';

let stack: Stack;
let mitm: MitmRelay;
beforeEach(async () => {
  stack = await startStack();
  mitm = await startMitmRelay(stack.relayUrl);
});
afterEach(async () => {
  await mitm.close();
  await stack.close();
});

/** Every seq a client has emitted, as a message or as failed (how it showed it does not matter). */
function processed(client: LatchkeyClient): number[] {
  const seqs: number[] = [];
  client.on('message', (m) => seqs.push(m.seq));
  client.on('failed', (f) => seqs.push(f.seq));
  return seqs;
}

/** A visitor on the real relay who has sent `texts` (seqs 1..n); `ids` are their msgIds. */
async function visitorWith(
  contact: string,
  texts: string[],
): Promise<{ v: LatchkeyClient; ids: string[] }> {
  const v = await stack.client(await stack.token(contact, 'v1', 'visitor'));
  const ids: string[] = [];
  for (const t of texts) ids.push((await v.send(t)).msgId);
  return { v, ids };
}

/** An agent connected through the proxy, and its proxied connection (after `ready`). */
async function agentViaMitm(
  contact: string,
  participant = 'a1',
): Promise<{ agent: LatchkeyClient; conn: MitmConnection }> {
  const agent = await stack.client(await stack.token(contact, participant, 'agent'), {
    relayUrl: mitm.url,
  });
  const conn = await mitm.waitForConnection(
    (c) => c.participantId === participant && c.contactId === contact,
  );
  return { agent, conn };
}

/** Frames of `type` in a log for one connection and direction, optionally from index `after`. */
function framesOf(
  log: readonly LoggedFrame[],
  conn: MitmConnection,
  type: string,
  opts: { dir?: 'toClient' | 'toRelay'; after?: number } = {},
): Frame[] {
  return log
    .slice(opts.after ?? 0)
    .filter((e) => e.conn === conn && e.dir === (opts.dir ?? 'toClient') && e.frame?.type === type)
    .map((e) => e.frame as Frame);
}

/** The envelopes of the `deliver` frames in a log for one connection. */
const delivered = (log: readonly LoggedFrame[], conn: MitmConnection, after = 0): Envelope[] =>
  framesOf(log, conn, 'deliver', { after }).map((f) => f.envelope as Envelope);

const seqsOf = (envs: readonly Envelope[]): (number | undefined)[] => envs.map((e) => e.seq);
const idsOf = (envs: readonly Envelope[]): (string | undefined)[] => envs.map((e) => e.msgId);
/** An envelope without its seq, to compare what was relabelled. */
const body = (e: Envelope): Envelope => {
  const { seq: _seq, ...rest } = e;
  return rest;
};

/**
 * The contact's history as the relay itself serves it, on a socket of its own (not through the
 * proxy), all pages: the envelopes and the head of the last page.
 */
async function relayHistory(contact: string): Promise<{ envelopes: Envelope[]; head: number }> {
  const ws = new WebSocket(stack.relayUrl);
  const frames: Frame[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data) => {
    frames.push(JSON.parse(String(data)) as Frame);
    for (const w of waiters.splice(0)) w();
  });
  const next = (pred: (f: Frame) => boolean): Promise<Frame> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('relayHistory: no answer from the relay')),
        5000,
      );
      const check = (): void => {
        const f = frames.find(pred);
        if (f?.type === 'error') {
          clearTimeout(timer);
          reject(new Error(`relayHistory: ${JSON.stringify(f)}`));
        } else if (f) {
          clearTimeout(timer);
          resolve(f);
        } else waiters.push(check);
      };
      check();
    });
  try {
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(
      JSON.stringify({ v: 1, type: 'auth', token: await stack.token(contact, 'reader', 'agent') }),
    );
    await next((f) => f.type === 'ready' || f.type === 'error');
    const envelopes: Envelope[] = [];
    let since = 0;
    for (let page = 0; ; page++) {
      ws.send(JSON.stringify({ v: 1, type: 'history', id: `p${page}`, since }));
      const f = await next(
        (x) => (x.type === 'history' && x.id === `p${page}`) || x.type === 'error',
      );
      const envs = f.envelopes as Envelope[];
      envelopes.push(...envs);
      since = envs.at(-1)?.seq ?? since;
      if (f.more !== true || envs.length === 0) return { envelopes, head: f.head as number };
    }
  } finally {
    ws.close();
  }
}

describe('mitm relay', () => {
  it('passes a chat through unchanged and remembers what the relay sent', async () => {
    const { v } = await visitorWith('c-pass', ['one']);
    const { agent, conn } = await agentViaMitm('c-pass');
    const got: [number, string][] = [];
    agent.on('message', (m) => got.push([m.seq, m.text]));
    await until(() => got.length === 1, 5000, 'replay');
    await agent.send('two');
    await v.send('three');
    await until(() => got.length === 3, 5000, 'deliveries');
    // Untouched traffic is plain chat to the client.
    expect(got).toEqual([
      [1, 'one'],
      [2, 'two'],
      [3, 'three'],
    ]);
    // Every frame went on exactly as it came, both ways.
    for (const dir of ['toClient', 'toRelay'] as const) {
      const pick = (log: readonly LoggedFrame[]): (Frame | null)[] =>
        log.filter((e) => e.conn === conn && e.dir === dir).map((e) => e.frame);
      expect(pick(mitm.sent), dir).toEqual(pick(mitm.seen));
    }
    expect(mitm.sent.some((e) => e.injected)).toBe(false);
    expect(mitm.envelopes().map((e) => e.seq)).toEqual([1, 3]); // seq 2 is the agent's own, acked
    expect(mitm.envelope(3).senderId).toBe('v1');
    expect([conn.contactId, conn.role]).toEqual(['c-pass', 'agent']);
  });

  it('replays a remembered envelope under another seq, to the client only', async () => {
    await visitorWith('c-replay', ['please refund', 'thanks']);
    const { agent, conn } = await agentViaMitm('c-replay');
    const seqs = processed(agent);
    await until(() => seqs.length === 2, 5000, 'replay');
    const mark = mitm.sent.length;
    expect(mitm.replay(1, { asSeq: 3 })).toBe(1);
    const sent = mitm.sent.slice(mark);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ conn, dir: 'toClient', injected: true });
    expect(sent[0]?.frame).toEqual({
      v: 1,
      type: 'deliver',
      envelope: { ...mitm.envelope(1), seq: 3 },
    });
    await until(() => seqs.includes(3), 5000, 'the client to take the replayed frame');
    // The relay knows nothing of it.
    expect(framesOf(mitm.sent, conn, 'send', { dir: 'toRelay' })).toEqual([]);
    const stored = await relayHistory('c-replay');
    expect([seqsOf(stored.envelopes), stored.head]).toEqual([[1, 2], 2]);
  });

  it('duplicates a live delivery with a rewrite and act.duplicate', async () => {
    const { v } = await visitorWith('c-dup', []);
    const { agent, conn } = await agentViaMitm('c-dup');
    const seqs = processed(agent);
    // Each deliver goes on as it is, and once more relabelled one seq further on.
    const rule = mitm.toClient((f) => {
      if (f.type !== 'deliver') return undefined;
      const env = f.envelope as { seq: number };
      return [f, { ...f, envelope: { ...env, seq: env.seq + 1 } }];
    });
    const hello = await v.send('hello');
    await until(() => seqs.length === 2, 5000, 'duplicated delivery');
    const copies = delivered(mitm.sent, conn);
    expect(seqsOf(copies)).toEqual([1, 2]);
    expect(copies.map(body)).toEqual([body(mitm.envelope(1)), body(mitm.envelope(1))]);
    expect(copies[0]?.msgId).toBe(hello.msgId);
    expect(seqsOf(delivered(mitm.seen, conn))).toEqual([1]); // the relay sent it once
    expect(rule.hits).toBe(1);
    mitm.clearRules();
    // act.duplicate sends the very frame twice.
    mitm.toClient((f) => (f.type === 'deliver' ? act.duplicate() : undefined));
    const mark = mitm.sent.length;
    await v.send('again');
    await until(() => delivered(mitm.sent, conn, mark).length === 2, 5000, 'duplicated frame');
    const twice = framesOf(mitm.sent, conn, 'deliver', { after: mark });
    expect(twice[1]).toEqual(twice[0]);
    expect(twice[0]).toEqual(framesOf(mitm.seen, conn, 'deliver').at(-1));
  });

  it('drops rekey for one connection only', async () => {
    const { agent: a1 } = await agentViaMitm('c-rekey', 'a1');
    // The witness is a bare socket: a client that got the rekey would fetch a key, and a fetch
    // still running when the key service stops holds its close up.
    const witness = new WebSocket(mitm.url);
    await new Promise((resolve) => witness.once('open', resolve));
    witness.send(
      JSON.stringify({ v: 1, type: 'auth', token: await stack.token('c-rekey', 'a2', 'agent') }),
    );
    const conn2 = await mitm.waitForConnection((c) => c.participantId === 'a2');
    conn2.sendToRelay({ v: 1, type: 'join', since: 0 });
    await mitm.waitFor((e) => e.conn === conn2 && e.frame?.type === 'joined');
    const rule = mitm.dropType('rekey', { conn: (c) => c.participantId === 'a1' });
    const admin = deriveAdminKey(stack.secret);
    const res = await fetch(
      `${stack.relayUrl.replace(/^ws/, 'http')}/admin/v1/contacts/c-rekey/kick`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${admin.id}:${Buffer.from(admin.secret).toString('base64url')}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ participantId: 'gone' }),
      },
    );
    expect(res.status).toBe(200);
    await res.text(); // a response left unread keeps the relay's HTTP server from closing
    const isRekey =
      (who: string) => (e: { frame: Frame | null; conn: { participantId: string | undefined } }) =>
        e.frame?.type === 'rekey' && e.conn.participantId === who;
    await mitm.waitFor(isRekey('a1'));
    await mitm.waitFor(isRekey('a2'), { log: 'sent' });
    expect(mitm.sent.some(isRekey('a1'))).toBe(false);
    expect(rule.hits).toBe(1);
    expect(a1.state).toBe('connected');
    witness.close();
  });

  it('holds deliveries and releases them in the order asked', async () => {
    const { v } = await visitorWith('c-hold', []);
    const { agent, conn } = await agentViaMitm('c-hold');
    const seqs = processed(agent);
    const rule = mitm.toClient((f) =>
      f.type === 'deliver' ? act.hold({ label: 'd' }) : undefined,
    );
    for (const t of ['a', 'b', 'c']) await v.send(t);
    const held = await mitm.waitForHeld(3);
    expect(held.map((h) => [h.label, (h.frame.envelope as Envelope).seq])).toEqual([
      ['d', 1],
      ['d', 2],
      ['d', 3],
    ]);
    expect(delivered(mitm.sent, conn)).toEqual([]);
    rule.remove();
    const mark = mitm.sent.length;
    expect(mitm.release([...held].reverse())).toBe(3);
    expect(mitm.held).toEqual([]);
    expect(seqsOf(delivered(mitm.sent, conn, mark))).toEqual([3, 2, 1]);
    expect(delivered(mitm.sent, conn, mark)).toEqual(delivered(mitm.seen, conn).reverse());
    expect(mitm.release(held)).toBe(0); // released once only
    await until(() => seqs.length === 3, 5000, 'the client to take the released frames');
  });

  it('swaps two seqs, live and in history pages (a missing partner from memory)', async () => {
    const { v } = await visitorWith('c-swap', []);
    const { agent, conn } = await agentViaMitm('c-swap');
    const seqs = processed(agent);
    mitm.swapSeqs(1, 3);
    const ids: string[] = [];
    for (const t of ['please refund', 'ok', 'do not refund']) ids.push((await v.send(t)).msgId);
    await until(() => seqs.length === 3, 5000, 'swapped deliveries');
    const live = delivered(mitm.sent, conn);
    expect(seqsOf(live)).toEqual([1, 2, 3]);
    expect(idsOf(live)).toEqual([ids[2], ids[1], ids[0]]);
    expect(live.map(body)).toEqual([
      body(mitm.envelope(3)),
      body(mitm.envelope(2)),
      body(mitm.envelope(1)),
    ]);
    // Held until 3 arrived: nothing of 1 or 2 went on before the relay sent 3.
    const firstSent = mitm.sent.find((e) => e.conn === conn && e.frame?.type === 'deliver');
    const third = mitm.seen.find(
      (e) =>
        e.conn === conn && e.frame?.type === 'deliver' && (e.frame.envelope as Envelope).seq === 3,
    );
    expect(firstSent!.at).toBeGreaterThanOrEqual(third!.at);
    // A full page has both partners.
    await agent.history();
    const page = framesOf(mitm.sent, conn, 'history').at(-1)!;
    expect(seqsOf(page.envelopes as Envelope[])).toEqual([1, 2, 3]);
    expect(idsOf(page.envelopes as Envelope[])).toEqual([ids[2], ids[1], ids[0]]);
    // A page after seq 2 lacks seq 1: 3's partner comes from the envelopes remembered.
    conn.sendToRelay({ v: 1, type: 'history', id: 'from-2', since: 2 });
    const partial = await mitm.waitFor(
      (e) =>
        e.conn === conn &&
        e.dir === 'toClient' &&
        e.frame?.type === 'history' &&
        e.frame.id === 'from-2',
      { log: 'sent' },
    );
    expect(partial.frame?.envelopes).toEqual([{ ...mitm.envelope(1), seq: 3 }]);
  });

  it('drops one message and renumbers the rest: deliveries, heads, history, acks and cursors', async () => {
    const { ids } = await visitorWith('c-renum', ['m1', 'm2', 'm3']);
    mitm.renumberAfterDrop(2);
    const { agent, conn } = await agentViaMitm('c-renum');
    const seqs = processed(agent);
    await until(() => seqs.length === 2, 5000, 'renumbered replay');
    expect(seqsOf(delivered(mitm.seen, conn))).toEqual([1, 2, 3]);
    const replayed = delivered(mitm.sent, conn);
    expect(seqsOf(replayed)).toEqual([1, 2]);
    expect(idsOf(replayed)).toEqual([ids[0], ids[2]]);
    const heads = (log: readonly LoggedFrame[]): unknown[] =>
      ['ready', 'joined'].flatMap((t) => framesOf(log, conn, t).map((f) => f.head));
    expect(heads(mitm.seen)).toEqual([3, 3]);
    expect(heads(mitm.sent)).toEqual([2, 2]);
    // Live: the relay's seq 4 goes on as 3.
    const v = await stack.client(await stack.token('c-renum', 'v1', 'visitor'));
    const m4 = await v.send('m4');
    expect(m4.seq).toBe(4);
    await until(() => seqs.length === 3, 5000, 'renumbered live delivery');
    expect(delivered(mitm.sent, conn).at(-1)).toMatchObject({ seq: 3, msgId: m4.msgId });
    // History: the relay's page, renumbered.
    await agent.history();
    const page = framesOf(mitm.sent, conn, 'history').at(-1)!;
    expect([
      seqsOf(page.envelopes as Envelope[]),
      idsOf(page.envelopes as Envelope[]),
      page.head,
    ]).toEqual([[1, 2, 3], [ids[0], ids[2], m4.msgId], 3]);
    // A reconnect resumes from the client's renumbered cursor, mapped back to the relay's seqs.
    conn.kill();
    const conn2 = await mitm.waitForConnection(
      (c) => c !== conn && c.participantId === 'a1',
      10_000,
    );
    await mitm.waitFor((e) => e.conn === conn2 && e.frame?.type === 'joined', { log: 'sent' });
    const join = (log: readonly LoggedFrame[]): unknown =>
      framesOf(log, conn2, 'join', { dir: 'toRelay' })[0]?.since;
    expect([join(mitm.seen), join(mitm.sent)]).toEqual([3, 4]);
    const m5 = await v.send('m5');
    expect(m5.seq).toBe(5);
    await until(() => seqs.length === 4, 5000, 'delivery after reconnect');
    expect(delivered(mitm.sent, conn2).at(-1)).toMatchObject({ seq: 4, msgId: m5.msgId });
    // The agent's own send: the relay acks 6, the client is told 5.
    await until(() => agent.state === 'connected', 5000, 'reconnected');
    const m6 = await agent.send('m6');
    const acks = (log: readonly LoggedFrame[]): unknown[] =>
      framesOf(log, conn2, 'ack').map((f) => f.seq);
    expect([acks(mitm.seen), acks(mitm.sent), m6.seq]).toEqual([[6], [5], 5]);
  });

  it('truncates after a seq, in replay, history pages and heads', async () => {
    await visitorWith('c-cut', ['m1', 'm2', 'm3', 'm4']);
    mitm.truncateAfter(2);
    const { agent, conn } = await agentViaMitm('c-cut');
    await mitm.waitFor((e) => e.conn === conn && e.frame?.type === 'joined', { log: 'sent' });
    expect(seqsOf(delivered(mitm.seen, conn))).toEqual([1, 2, 3, 4]);
    expect(seqsOf(delivered(mitm.sent, conn))).toEqual([1, 2]);
    const heads = mitm.sent
      .filter((e) => e.conn === conn && (e.frame?.type === 'ready' || e.frame?.type === 'joined'))
      .map((e) => e.frame?.head);
    expect(heads).toEqual([2, 2]);
    await agent.history();
    const page = framesOf(mitm.sent, conn, 'history').at(-1)!;
    expect([seqsOf(page.envelopes as Envelope[]), page.head, page.more]).toEqual([
      [1, 2],
      2,
      false,
    ]);
    // A short page that the relay says has more: nothing more after the cut.
    conn.sendToRelay({ v: 1, type: 'history', id: 'short', since: 1, limit: 2 });
    const short = await mitm.waitFor(
      (e) =>
        e.conn === conn &&
        e.dir === 'toClient' &&
        e.frame?.type === 'history' &&
        e.frame.id === 'short',
      { log: 'sent' },
    );
    const fromRelay = framesOf(mitm.seen, conn, 'history').find((f) => f.id === 'short')!;
    expect([seqsOf(fromRelay.envelopes as Envelope[]), fromRelay.head, fromRelay.more]).toEqual([
      [2, 3],
      4,
      true,
    ]);
    expect([
      seqsOf(short.frame?.envelopes as Envelope[]),
      short.frame?.head,
      short.frame?.more,
    ]).toEqual([[2], 2, false]);
  });

  it('serves a doctored history page itself and rewrites envelope fields', async () => {
    await visitorWith('c-doctor', ['m1', 'm2', 'm3']);
    const { agent, conn } = await agentViaMitm('c-doctor');
    const seqs = processed(agent);
    await until(() => seqs.length === 3, 5000, 'replay');
    const rule = mitm.serveHistory(() => ({
      envelopes: [{ ...mitm.envelope(3), seq: 1 }],
      head: 1,
    }));
    await agent.history();
    const asked = framesOf(mitm.seen, conn, 'history', { dir: 'toRelay' });
    expect(asked).toHaveLength(1);
    expect(framesOf(mitm.sent, conn, 'history', { dir: 'toRelay' })).toEqual([]); // the relay never saw it
    expect(framesOf(mitm.seen, conn, 'history')).toEqual([]);
    expect(framesOf(mitm.sent, conn, 'history')).toEqual([
      {
        v: 1,
        type: 'history',
        id: asked[0]?.id,
        envelopes: [{ ...mitm.envelope(3), seq: 1 }],
        head: 1,
        more: false,
      },
    ]);
    expect(rule.hits).toBe(1);
    mitm.clearRules();
    // A rewrite touches the named field of the named envelope only.
    mitm.rewriteEnvelopes((env) =>
      env.seq === 2 ? { ...env, sentAt: (env.sentAt ?? 0) + 1 } : undefined,
    );
    await agent.history();
    const fromRelay = framesOf(mitm.seen, conn, 'history').at(-1)!.envelopes as Envelope[];
    const page = framesOf(mitm.sent, conn, 'history').at(-1)!.envelopes as Envelope[];
    expect(fromRelay).toEqual(mitm.envelopes());
    expect(page).toEqual([
      fromRelay[0],
      { ...fromRelay[1], sentAt: (fromRelay[1]?.sentAt ?? 0) + 1 },
      fromRelay[2],
    ]);
  });

  it('refuses new connections while asked to, like a relay that is down', async () => {
    mitm.acceptConnections(false);
    const ws = new WebSocket(mitm.url);
    const status = await new Promise<number | undefined>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      ws.on('open', () => resolve(undefined));
      ws.on('error', () => undefined);
    });
    ws.terminate();
    expect(status).toBe(503);
    mitm.acceptConnections(true);
    const agent = await stack.client(await stack.token('c-down', 'a1', 'agent'), {
      relayUrl: mitm.url,
    });
    expect(agent.state).toBe('connected');
  });
});

describe('messages.db editor', () => {
  it('targets the relay’s current store schema and refuses another, loudly and without a change', () => {
    expect(MESSAGES_DB_SCHEMA_VERSION).toBe(STORE_SCHEMA_VERSION);
    const make = (name: string, version: number, sql: string): string => {
      const file = join(stack.dir, name);
      writeFileSync(file, '');
      const db = new Database(file);
      db.exec(sql);
      db.pragma(`user_version = ${version}`);
      db.close();
      return file;
    };
    const older = make('v2.db', 2, 'CREATE TABLE messages (x INTEGER)');
    expect(() => MessagesDb.open(older)).toThrow(
      /schema version 2, this tool edits version 6 only; update tests\/integration\/messages-db.ts/,
    );
    // The last schema the tool knew, as store.ts v3 left it: no quota counters.
    const v3 = make(
      'v3.db',
      3,
      `CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, head_seq INTEGER NOT NULL, created_at INTEGER NOT NULL);
       CREATE TABLE messages (contact_id TEXT, seq INTEGER, msg_id TEXT, sender_id TEXT, epoch INTEGER, sent_at INTEGER, stored_at INTEGER, envelope TEXT);`,
    );
    expect(() => MessagesDb.open(v3)).toThrow(/schema version 3/);
    const newer = make('v7.db', 7, 'CREATE TABLE messages (x INTEGER)');
    expect(() => MessagesDb.open(newer)).toThrow(/schema version 7/);
    const db = new Database(v3, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(3);
    db.close();
    // A v6 file without what v4 brought is refused too.
    const hollow = make(
      'hollow.db',
      6,
      `CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, head_seq INTEGER NOT NULL, stored_messages INTEGER, stored_bytes INTEGER);
       CREATE TABLE messages (contact_id TEXT, seq INTEGER, msg_id TEXT, sender_id TEXT, epoch INTEGER, sent_at INTEGER, stored_at INTEGER, envelope TEXT);`,
    );
    expect(() => MessagesDb.open(hollow)).toThrow(/lacks sender_usage columns/);
  });

  it('edits a live relay’s store; the relay serves exactly the edits and counts on from them', async () => {
    const v = await stack.client(await stack.token('c-db', 'v1', 'visitor'));
    const a = await stack.client(await stack.token('c-db', 'a1', 'agent'));
    const label = new Map<string, string>();
    for (const [who, text] of [
      [v, 'm1'],
      [v, 'm2'],
      [a, 'm3'],
      [v, 'm4'],
      [a, 'm5'],
    ] as const)
      label.set((await who.send(text)).msgId, text);
    const db = MessagesDb.open(stack.dir);
    try {
      const original = new Map(db.rows('c-db').map((r) => [r.msgId, r.envelopeJson]));
      const size = (msgIds: string[]): number =>
        msgIds.reduce((n, id) => n + Buffer.byteLength(original.get(id) ?? ''), 0);
      const idOf = (text: string): string => [...label].find(([, t]) => t === text)![0];
      /** What the relay serves: [seq, label]; each envelope byte for byte as first stored, but its seq. */
      const served = async (): Promise<[number, string][]> => {
        const page = await relayHistory('c-db');
        expect(page.head).toBe(db.head('c-db'));
        return page.envelopes.map((e) => {
          const { seq, ...rest } = e;
          expect(JSON.stringify(rest)).toBe(original.get(e.msgId!));
          return [seq!, label.get(e.msgId!)!];
        });
      };
      /** The stored counters, checked against a count of the rows. */
      const usage = (): [number, Record<string, number>] => {
        expect(db.problems('c-db')).toEqual([]);
        const u = db.usage('c-db');
        return [
          u.messages,
          Object.fromEntries(Object.entries(u.senders).map(([id, s]) => [id, s.messages])),
        ];
      };
      expect(usage()).toEqual([5, { v1: 3, a1: 2 }]);

      db.deleteAndRenumber('c-db', 2);
      expect(db.head('c-db')).toBe(4);
      expect(await served()).toEqual([
        [1, 'm1'],
        [2, 'm3'],
        [3, 'm4'],
        [4, 'm5'],
      ]);
      expect(usage()).toEqual([4, { v1: 2, a1: 2 }]);
      expect(db.usage('c-db').bytes).toBe(size(['m1', 'm3', 'm4', 'm5'].map(idOf)));

      db.swap('c-db', 1, 3);
      expect(await served()).toEqual([
        [1, 'm4'],
        [2, 'm3'],
        [3, 'm1'],
        [4, 'm5'],
      ]);
      expect(usage()).toEqual([4, { v1: 2, a1: 2 }]);

      expect(db.replay('c-db', 3)).toBe(5);
      expect(db.replay('c-db', 2, { at: 1 })).toBe(1);
      expect(await served()).toEqual([
        [1, 'm3'],
        [2, 'm4'],
        [3, 'm3'],
        [4, 'm1'],
        [5, 'm5'],
        [6, 'm1'],
      ]);
      expect(db.rows('c-db').map((r) => r.msgId)).toEqual([
        `${idOf('m3')}~replay0`,
        idOf('m4'),
        idOf('m3'),
        idOf('m1'),
        idOf('m5'),
        `${idOf('m1')}~replay0`,
      ]);
      expect(usage()).toEqual([6, { v1: 3, a1: 3 }]);

      expect(db.truncateAfter('c-db', 3)).toBe(3);
      expect(await served()).toEqual([
        [1, 'm3'],
        [2, 'm4'],
        [3, 'm3'],
      ]);
      expect(usage()).toEqual([3, { v1: 1, a1: 2 }]);

      // A rewrite: the field changes, the columns and counters follow, the key order stays the relay's.
      const before = db.row('c-db', 2);
      db.rewriteEnvelope('c-db', 2, (e) => ({ ...e, sentAt: (e.sentAt ?? 0) + 1, extra: 'x' }));
      const after = db.row('c-db', 2);
      expect(after.sentAt).toBe(before.sentAt + 1);
      expect(after.envelopeJson).toBe(
        `${before.envelopeJson.replace(`"sentAt":${before.sentAt}`, `"sentAt":${before.sentAt + 1}`).slice(0, -1)},"extra":"x"}`,
      );
      const page = await relayHistory('c-db');
      expect(page.envelopes[1]).toEqual({
        ...JSON.parse(before.envelopeJson),
        sentAt: before.sentAt + 1,
        extra: 'x',
        seq: 2,
      });
      expect(usage()).toEqual([3, { v1: 1, a1: 2 }]);
      expect(db.usage('c-db').senders.v1?.bytes).toBe(Buffer.byteLength(after.envelopeJson));

      // An insert is stored in the relay's key order whatever order it was given in.
      const model = JSON.parse(db.row('c-db', 1).envelopeJson) as Record<string, unknown>;
      const shuffled = Object.fromEntries(
        Object.entries({ ...model, msgId: 'inserted-by-hand' }).reverse(),
      );
      expect(db.insert('c-db', shuffled, { at: 2 })).toBe(2);
      expect(db.row('c-db', 2).envelopeJson).toBe(
        JSON.stringify({ ...model, msgId: 'inserted-by-hand' }),
      );
      expect(db.rows('c-db').map((r) => r.seq)).toEqual([1, 2, 3, 4]);
      expect(usage()).toEqual([4, { v1: 1, a1: 3 }]);
    } finally {
      db.close();
    }
    // The relay goes on from the edited head and counts on from the edited counters.
    expect((await v.send('after')).seq).toBe(5);
    const end = MessagesDb.open(stack.dir);
    try {
      expect(end.problems('c-db')).toEqual([]);
      expect(end.usage('c-db').senders.v1?.messages).toBe(2);
    } finally {
      end.close();
    }
  });

  it('edits a stopped relay’s store; the restarted relay serves it and enforces the quota on its counters', async () => {
    const { ids } = await visitorWith('c-off', ['m1', 'm2', 'm3']);
    await stack.stopRelay();
    const db = MessagesDb.open(join(stack.dir, 'relay', 'messages.db'));
    db.deleteAndRenumber('c-off', 1);
    expect(db.problems('c-off')).toEqual([]);
    db.close();
    // The relay again, with room for three messages per participant: v1 has two left stored.
    const relay = await startRelay({
      dataDir: stack.dir,
      host: '127.0.0.1',
      port: 0,
      apiSecret: stack.secret,
      quota: { participantMessages: 3 },
    });
    try {
      stack.relayUrl = relay.url;
      const page = await relayHistory('c-off');
      expect([seqsOf(page.envelopes), idsOf(page.envelopes), page.head]).toEqual([
        [1, 2],
        [ids[1], ids[2]],
        2,
      ]);
      const v = await stack.client(await stack.token('c-off', 'v1', 'visitor'));
      expect((await v.send('third')).seq).toBe(3);
      const refused = await v.send('fourth').catch((e: unknown) => e);
      expect(LatchkeyError.is(refused, 'QUOTA_EXCEEDED')).toBe(true);
      v.close();
    } finally {
      await relay.close();
    }
  });
});
