/**
 * Self-test of the attack tools (issue 13): the man-in-the-middle relay and the messages.db
 * editor do what they say against the real relay and today's clients. These test the tools,
 * not the protocol's defences.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ChatMessage, LatchkeyClient } from '@latchkey/client';
import { STORE_SCHEMA_VERSION } from '@latchkey/relay';
import { deriveAdminKey } from '@latchkey/tokens';
import { startStack, until, type Stack } from './harness.ts';
import { MESSAGES_DB_SCHEMA_VERSION, MessagesDb } from './messages-db.ts';
import { act, startMitmRelay, type Frame, type LoggedFrame, type MitmRelay } from './mitm-relay.ts';

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

function collect(client: LatchkeyClient): ChatMessage[] {
  const got: ChatMessage[] = [];
  client.on('message', (m) => got.push(m));
  return got;
}

const view = (list: { seq: number; text: string }[]): [number, string][] => list.map((m) => [m.seq, m.text]);

/** A visitor on the real relay who has sent `texts` (seqs 1..n). */
async function visitorWith(contact: string, texts: string[]): Promise<LatchkeyClient> {
  const v = await stack.client(await stack.token(contact, 'v1', 'visitor'));
  for (const t of texts) await v.send(t);
  return v;
}

/** An agent connected through the proxy. */
async function agentViaMitm(contact: string, participant = 'a1'): Promise<LatchkeyClient> {
  return stack.client(await stack.token(contact, participant, 'agent'), { relayUrl: mitm.url });
}

describe('mitm relay', () => {
  it('passes a chat through unchanged and remembers what the relay sent', async () => {
    const v = await visitorWith('c-pass', ['one']);
    const agent = await agentViaMitm('c-pass');
    const got = collect(agent);
    await until(() => got.length === 1, 5000, 'replay');
    await agent.send('two');
    await v.send('three');
    await until(() => got.length === 3, 5000, 'deliveries');
    expect(view(got)).toEqual([
      [1, 'one'],
      [2, 'two'],
      [3, 'three'],
    ]);
    expect(mitm.envelopes().map((e) => e.seq)).toEqual([1, 3]); // seq 2 is the agent's own, acked
    expect(mitm.envelope(3).senderId).toBe('v1');
    const conn = await mitm.waitForConnection((c) => c.participantId === 'a1');
    expect([conn.contactId, conn.role]).toEqual(['c-pass', 'agent']);
  });

  it('replays a remembered envelope: the client shows it twice', async () => {
    await visitorWith('c-replay', ['please refund', 'thanks']);
    const agent = await agentViaMitm('c-replay');
    const got = collect(agent);
    await until(() => got.length === 2, 5000, 'replay');
    expect(mitm.replay(1, { asSeq: 3 })).toBe(1);
    await until(() => got.length === 3, 5000, 'replayed delivery');
    expect(view(got)).toEqual([
      [1, 'please refund'],
      [2, 'thanks'],
      [3, 'please refund'],
    ]);
    expect(got[2]?.msgId).toBe(got[0]?.msgId);
  });

  it('duplicates a live delivery with a rewrite and act.duplicate', async () => {
    const v = await visitorWith('c-dup', []);
    const agent = await agentViaMitm('c-dup');
    const got = collect(agent);
    let next = 0;
    // Each deliver goes on as it is, and once more relabelled one seq further on.
    mitm.toClient((f) => {
      if (f.type !== 'deliver') return undefined;
      const env = f.envelope as { seq: number };
      next = env.seq + 1;
      return [f, { ...f, envelope: { ...env, seq: next } }];
    });
    await v.send('hello');
    await until(() => got.length === 2, 5000, 'duplicated delivery');
    expect(view(got)).toEqual([
      [1, 'hello'],
      [2, 'hello'],
    ]);
    expect(next).toBe(2);
    mitm.clearRules();
    // act.duplicate sends the very frame twice.
    mitm.toClient((f) => (f.type === 'deliver' ? act.duplicate() : undefined));
    const mark = mitm.sent.length;
    await v.send('again');
    const copies = (): LoggedFrame[] => mitm.sent.slice(mark).filter((e) => e.frame?.type === 'deliver');
    await until(() => copies().length === 2, 5000, 'duplicated frame');
    expect(copies()[1]?.frame).toEqual(copies()[0]?.frame);
  });

  it('drops rekey for one connection only', async () => {
    const a1 = await agentViaMitm('c-rekey', 'a1');
    // The witness is a bare socket: a client that got the rekey would fetch a key, and a fetch
    // still running when the key service stops holds its close up.
    const witness = new WebSocket(mitm.url);
    await new Promise((resolve) => witness.once('open', resolve));
    witness.send(JSON.stringify({ v: 1, type: 'auth', token: await stack.token('c-rekey', 'a2', 'agent') }));
    const conn2 = await mitm.waitForConnection((c) => c.participantId === 'a2');
    conn2.sendToRelay({ v: 1, type: 'join', since: 0 });
    await mitm.waitFor((e) => e.conn === conn2 && e.frame?.type === 'joined');
    const rule = mitm.dropType('rekey', { conn: (c) => c.participantId === 'a1' });
    const admin = deriveAdminKey(stack.secret);
    const res = await fetch(`${stack.relayUrl.replace(/^ws/, 'http')}/admin/v1/contacts/c-rekey/kick`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${admin.id}:${Buffer.from(admin.secret).toString('base64url')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ participantId: 'gone' }),
    });
    expect(res.status).toBe(200);
    await res.text(); // a response left unread keeps the relay's HTTP server from closing
    const isRekey = (who: string) => (e: { frame: Frame | null; conn: { participantId: string | undefined } }) =>
      e.frame?.type === 'rekey' && e.conn.participantId === who;
    await mitm.waitFor(isRekey('a1'));
    await mitm.waitFor(isRekey('a2'), { log: 'sent' });
    expect(mitm.sent.some(isRekey('a1'))).toBe(false);
    expect(rule.hits).toBe(1);
    expect(a1.state).toBe('connected');
    witness.close();
  });

  it('holds deliveries and releases them in reverse; the client still orders by seq', async () => {
    const v = await visitorWith('c-hold', []);
    const agent = await agentViaMitm('c-hold');
    const got = collect(agent);
    const rule = mitm.toClient((f) => (f.type === 'deliver' ? act.hold({ label: 'd' }) : undefined));
    for (const t of ['a', 'b', 'c']) await v.send(t);
    const held = await mitm.waitForHeld(3);
    expect(got).toEqual([]);
    rule.remove();
    const mark = mitm.sent.length;
    expect(mitm.release([...held].reverse())).toBe(3);
    await until(() => got.length === 3, 5000, 'released deliveries');
    const order = mitm.sent.slice(mark).map((e) => (e.frame?.envelope as { seq: number }).seq);
    expect(order).toEqual([3, 2, 1]);
    expect(view(got)).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'c'],
    ]);
  });

  it('swaps two seqs, live and in history', async () => {
    const v = await visitorWith('c-swap', []);
    const agent = await agentViaMitm('c-swap');
    const got = collect(agent);
    mitm.swapSeqs(1, 3);
    for (const t of ['please refund', 'ok', 'do not refund']) await v.send(t);
    await until(() => got.length === 3, 5000, 'swapped deliveries');
    const swapped: [number, string][] = [
      [1, 'do not refund'],
      [2, 'ok'],
      [3, 'please refund'],
    ];
    expect(view(got)).toEqual(swapped);
    expect(view((await agent.history()).map((h) => ({ seq: h.seq, text: h.ok ? h.text : '' })))).toEqual(swapped);
  });

  it('drops one message and renumbers the rest, live, in history and after a reconnect', async () => {
    await visitorWith('c-renum', ['m1', 'm2', 'm3']);
    mitm.renumberAfterDrop(2);
    const agent = await agentViaMitm('c-renum');
    const got = collect(agent);
    await until(() => got.length === 2, 5000, 'renumbered replay');
    const v = await stack.client(await stack.token('c-renum', 'v1', 'visitor'));
    await v.send('m4');
    await until(() => got.length === 3, 5000, 'renumbered live delivery');
    const expected: [number, string][] = [
      [1, 'm1'],
      [2, 'm3'],
      [3, 'm4'],
    ];
    expect(view(got)).toEqual(expected);
    expect(view((await agent.history()).map((h) => ({ seq: h.seq, text: h.ok ? h.text : '' })))).toEqual(expected);
    // The client resumes from its renumbered cursor: nothing is missed or shown twice.
    const conn = await mitm.waitForConnection((c) => c.participantId === 'a1');
    conn.kill();
    await until(() => agent.state === 'reconnecting', 5000, 'reconnecting');
    await until(() => agent.state === 'connected', 5000, 'reconnected');
    await v.send('m5');
    await until(() => got.length === 4, 5000, 'delivery after reconnect');
    expect(got[3]).toMatchObject({ seq: 4, text: 'm5' });
    const ack = await agent.send('m6');
    expect(ack.seq).toBe(5);
  });

  it('truncates after a seq, in replay, history and heads', async () => {
    await visitorWith('c-cut', ['m1', 'm2', 'm3', 'm4']);
    mitm.truncateAfter(2);
    const agent = await agentViaMitm('c-cut');
    const got = collect(agent);
    await mitm.waitFor((e) => e.frame?.type === 'joined', { log: 'sent' });
    const heads = mitm.sent.filter((e) => e.frame?.type === 'ready' || e.frame?.type === 'joined').map((e) => e.frame?.head);
    expect(heads).toEqual([2, 2]);
    await until(() => got.length === 2, 5000, 'truncated replay');
    expect((await agent.history()).map((h) => h.seq)).toEqual([1, 2]);
    expect(view(got)).toEqual([
      [1, 'm1'],
      [2, 'm2'],
    ]);
  });

  it('serves a doctored history page and rewrites envelope fields', async () => {
    await visitorWith('c-doctor', ['m1', 'm2', 'm3']);
    const agent = await agentViaMitm('c-doctor');
    const got = collect(agent);
    await until(() => got.length === 3, 5000, 'replay');
    mitm.serveHistory(() => ({ envelopes: [{ ...mitm.envelope(3), seq: 1 }], head: 1 }));
    expect(view((await agent.history()).map((h) => ({ seq: h.seq, text: h.ok ? h.text : '' })))).toEqual([[1, 'm3']]);
    mitm.clearRules();
    // A changed bound field makes the envelope fail to open: the rewrite reached the client.
    mitm.rewriteEnvelopes((env) => (env.seq === 2 ? { ...env, sentAt: (env.sentAt ?? 0) + 1 } : undefined));
    const history = await agent.history();
    expect(history.map((h) => [h.seq, h.ok])).toEqual([
      [1, true],
      [2, false],
      [3, true],
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
    const agent = await stack.client(await stack.token('c-down', 'a1', 'agent'), { relayUrl: mitm.url });
    expect(agent.state).toBe('connected');
  });
});

describe('messages.db editor', () => {
  it('targets the relay’s current store schema and refuses another', () => {
    expect(MESSAGES_DB_SCHEMA_VERSION).toBe(STORE_SCHEMA_VERSION);
    const file = join(stack.dir, 'other.db');
    writeFileSync(file, '');
    const db = new Database(file);
    db.pragma('user_version = 2');
    db.exec('CREATE TABLE messages (x INTEGER)');
    db.close();
    expect(() => MessagesDb.open(file)).toThrow(/schema version 2/);
  });

  it('edits a live relay’s store; history reads back exactly the edits', async () => {
    await visitorWith('c-db', ['m1', 'm2', 'm3', 'm4', 'm5']);
    const reader = await stack.client(await stack.token('c-db', 'a1', 'agent'), { live: false });
    const read = async (): Promise<[number, string][]> =>
      view((await reader.history()).map((h) => ({ seq: h.seq, text: h.ok ? h.text : '!' })));
    const db = MessagesDb.open(stack.dir);
    try {
      expect(db.rows('c-db').map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      db.deleteAndRenumber('c-db', 2);
      expect(db.head('c-db')).toBe(4);
      expect(await read()).toEqual([
        [1, 'm1'],
        [2, 'm3'],
        [3, 'm4'],
        [4, 'm5'],
      ]);
      db.swap('c-db', 1, 3);
      expect(await read()).toEqual([
        [1, 'm4'],
        [2, 'm3'],
        [3, 'm1'],
        [4, 'm5'],
      ]);
      expect(db.replay('c-db', 3)).toBe(5);
      expect(db.replay('c-db', 2, { at: 1 })).toBe(1);
      expect(await read()).toEqual([
        [1, 'm3'],
        [2, 'm4'],
        [3, 'm3'],
        [4, 'm1'],
        [5, 'm5'],
        [6, 'm1'],
      ]);
      expect(db.truncateAfter('c-db', 3)).toBe(3);
      expect(await read()).toEqual([
        [1, 'm3'],
        [2, 'm4'],
        [3, 'm3'],
      ]);
      db.rewriteEnvelope('c-db', 2, (e) => ({ ...e, sentAt: (e.sentAt ?? 0) + 1 }));
      expect(db.row('c-db', 2).sentAt).toBe((db.row('c-db', 2).envelope.sentAt ?? 0));
      expect(await read()).toEqual([
        [1, 'm3'],
        [2, '!'],
        [3, 'm3'],
      ]);
    } finally {
      db.close();
    }
    // The relay goes on from the edited head.
    const v = await stack.client(await stack.token('c-db', 'v1', 'visitor'));
    expect((await v.send('after')).seq).toBe(4);
  });

  it('edits a stopped relay’s store, read back after restart', async () => {
    await visitorWith('c-off', ['m1', 'm2', 'm3']);
    await stack.stopRelay();
    const db = MessagesDb.open(join(stack.dir, 'relay', 'messages.db'));
    db.deleteAndRenumber('c-off', 1);
    db.close();
    await stack.startRelay();
    const reader = await stack.client(await stack.token('c-off', 'a1', 'agent'), { live: false });
    expect((await reader.history()).map((h) => [h.seq, h.ok ? h.text : '!'])).toEqual([
      [1, 'm2'],
      [2, 'm3'],
    ]);
  });
});
