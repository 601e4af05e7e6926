/**
 * End to end on the embedded default: two participants chat through a real relay with keys
 * from the real key service; late readers, resumption, and what the databases hold.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeyReceiver, fetchContactKey, type ChatMessage } from '@latchkey/client';
import { LatchkeyError } from '@latchkey/protocol';
import { startStack, until, type Stack } from './harness.ts';

let stack: Stack;
beforeEach(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await stack.close();
});

function collect(client: {
  on(e: 'message', l: (m: ChatMessage) => void): unknown;
}): ChatMessage[] {
  const got: ChatMessage[] = [];
  client.on('message', (m) => got.push(m));
  return got;
}

describe('two participants of one contact', () => {
  it('exchange messages both ways, in order, with matching fingerprints', async () => {
    const visitor = await stack.client(await stack.token('c-chat', 'v1', 'visitor'));
    const agent = await stack.client(await stack.token('c-chat', 'a1', 'agent'));
    const atVisitor = collect(visitor);
    const atAgent = collect(agent);
    expect(visitor.fingerprint()).toBe(agent.fingerprint());

    const r1 = await visitor.send('hello, I need help');
    const r2 = await agent.send('hi! how can I help?');
    const r3 = await visitor.send('my order is late 📦');
    expect([r1.seq, r2.seq, r3.seq]).toEqual([1, 2, 3]);

    await until(() => atAgent.length === 3 && atVisitor.length === 3, 5000, 'deliveries');
    for (const list of [atVisitor, atAgent]) {
      expect(list.map((m) => [m.seq, m.senderId, m.text])).toEqual([
        [1, 'v1', 'hello, I need help'],
        [2, 'a1', 'hi! how can I help?'],
        [3, 'v1', 'my order is late 📦'],
      ]);
    }
    expect(atAgent[1]?.own).toBe(true);
    expect(atAgent[0]?.own).toBe(false);
    expect(atAgent[0]?.senderRole).toBe('visitor');
  });

  it('gives a late reader the full history in order', async () => {
    const visitor = await stack.client(await stack.token('c-late', 'v1'));
    for (let i = 1; i <= 25; i++) await visitor.send(`message ${i}`);
    const late = await stack.client(await stack.token('c-late', 'a9', 'agent'));
    const got = collect(late);
    await until(() => got.length === 25, 5000, 'replay');
    expect(got.map((m) => m.text)).toEqual(
      Array.from({ length: 25 }, (_, i) => `message ${i + 1}`),
    );
    const history = await late.history(20);
    expect(history.map((h) => h.seq)).toEqual([21, 22, 23, 24, 25]);
    expect(history.every((h) => h.ok)).toBe(true);
  });

  it('keeps contacts apart: another contact sees nothing and gets another key', async () => {
    const a = await stack.client(await stack.token('c-one', 'v1'));
    const b = await stack.client(await stack.token('c-two', 'v2'));
    const atB = collect(b);
    await a.send('only for contact one');
    await b.send('only for contact two');
    await until(() => atB.length === 1);
    expect(atB.map((m) => m.text)).toEqual(['only for contact two']);
    expect(a.fingerprint()).not.toBe(b.fingerprint());
  });

  it('resumes after the relay restarts: no gap, no duplicate, queued sends go out once', async () => {
    const visitor = await stack.client(await stack.token('c-resume', 'v1'));
    const agent = await stack.client(await stack.token('c-resume', 'a1', 'agent'));
    const atAgent = collect(agent);
    await visitor.send('before 1');
    await visitor.send('before 2');
    await until(() => atAgent.length === 2);

    await stack.stopRelay();
    await until(
      () => visitor.state === 'reconnecting' && agent.state === 'reconnecting',
      5000,
      'reconnecting',
    );
    const queued = [visitor.send('while offline 1'), visitor.send('while offline 2')];
    await until(() => visitor.pendingSends === 2, 2000, 'sends queued in the outbox');
    await stack.startRelay();

    const results = await Promise.all(queued);
    expect(results.map((r) => r.seq)).toEqual([3, 4]);
    await until(() => atAgent.length === 4, 8000, 'resumed deliveries');
    await new Promise((r) => setTimeout(r, 200));
    expect(atAgent.map((m) => m.text)).toEqual([
      'before 1',
      'before 2',
      'while offline 1',
      'while offline 2',
    ]);
    expect(agent.lastSeq).toBe(4);
  });

  it('a burst of sends far above the relay rate limit goes out once each, in order', async () => {
    const v = await stack.client(await stack.token('c-burst', 'v1'));
    const agent = await stack.client(await stack.token('c-burst', 'a1', 'agent'));
    const got = collect(agent);
    const errors: string[] = [];
    v.on('error', (e) => errors.push(e.code));
    const results = await Promise.all(Array.from({ length: 400 }, (_, i) => v.send(`burst ${i}`)));
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    await until(() => got.length === 400, 20_000, 'all deliveries');
    expect(got.map((m) => m.text)).toEqual(Array.from({ length: 400 }, (_, i) => `burst ${i}`));
    expect(v.state).toBe('connected');
    expect(errors).toEqual([]);
  }, 60_000);

  it('a new session resumes from a saved seq', async () => {
    const v = await stack.client(await stack.token('c-since', 'v1'));
    for (let i = 1; i <= 5; i++) await v.send(`m${i}`);
    const agent = await stack.client(await stack.token('c-since', 'a1', 'agent'), { since: 3 });
    const got = collect(agent);
    await until(() => got.length === 2);
    expect(got.map((m) => m.seq)).toEqual([4, 5]);
  });

  it('refuses a supervisor send locally and a bad token at connect', async () => {
    const sup = await stack.client(await stack.token('c-roles', 's1', 'supervisor'));
    await expect(sup.send('x')).rejects.toSatisfy((e) => LatchkeyError.is(e, 'FORBIDDEN'));
    const forged = (await stack.token('c-roles', 'v1')).slice(0, -3) + 'AAA';
    await expect(stack.client(forged)).rejects.toSatisfy((e) =>
      LatchkeyError.is(e, 'AUTH_INVALID'),
    );
  });
});

describe('what the databases hold after a chat', () => {
  async function filesUnder(dir: string, pattern: RegExp): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (const entry of await readdir(dir, { recursive: true })) {
      if (pattern.test(entry)) out.push(await readFile(join(dir, entry)));
    }
    return out;
  }

  it('the relay stores no plaintext and the key service no unwrapped key', async () => {
    const visitor = await stack.client(await stack.token('c-disk', 'v1'));
    const agent = await stack.client(await stack.token('c-disk', 'a1', 'agent'));
    const secrets = [
      'the secret plan is at noon',
      'card ends 4242, please refund',
      'Grüße aus Köln',
    ];
    for (const [i, text] of secrets.entries()) await (i % 2 ? agent : visitor).send(text);

    const relayFiles = await filesUnder(join(stack.dir, 'relay'), /messages\.db(-wal|-shm)?$/);
    expect(relayFiles.length).toBeGreaterThanOrEqual(2); // the database and its WAL
    const relayBytes = Buffer.concat(relayFiles);
    expect(relayBytes.length).toBeGreaterThan(0);
    for (const text of secrets) {
      expect(relayBytes.includes(Buffer.from(text, 'utf8'))).toBe(false);
      expect(relayBytes.includes(Buffer.from(JSON.stringify(text).slice(1, -1), 'utf8'))).toBe(
        false,
      );
    }
    // Sanity: the scan does find what is really there (the contact id, as metadata).
    expect(relayBytes.includes(Buffer.from('c-disk'))).toBe(true);

    const keyFiles = await filesUnder(join(stack.dir, 'keys'), /keys\.db(-wal|-shm)?$/);
    expect(keyFiles.length).toBeGreaterThanOrEqual(1);
    const keyBytes = Buffer.concat(keyFiles);
    const fetched = await fetchRawKey(stack, 'c-disk');
    expect(fetched.length).toBe(32);
    for (const form of [
      Buffer.from(fetched),
      Buffer.from(Buffer.from(fetched).toString('base64url')),
      Buffer.from(Buffer.from(fetched).toString('hex')),
    ]) {
      expect(keyBytes.includes(form)).toBe(false);
    }
    expect(keyBytes.includes(Buffer.from(stack.masterKey))).toBe(false);
  });
});

async function fetchRawKey(s: Stack, contactId: string): Promise<Uint8Array> {
  // Keys are only handed out sealed over plain HTTP: ask as a client does, then open it.
  const receiver = new KeyReceiver('x25519', 'probe');
  const res = await fetchContactKey(fetch, s.keysUrl, await s.token(contactId, 'probe', 'agent'), {
    delivery: receiver.request()!,
  });
  return receiver.open(res);
}
