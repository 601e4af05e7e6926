/**
 * Issue 13 "Contract": a relay operator edits `messages.db` (messages-db.ts) and a member reads
 * with the real `latchkey read` (a child process, token in a 0600 `--token-file`), text and
 * `--json`. Each edit prints its exact contract line (`SEQ INTEGRITY CODE from SENDER`,
 * `SEQ INTEGRITY MISSING N from SENDER`, `SEQ DECRYPT_FAILED from SENDER`), a replayed duplicate
 * is never printed as a message again, and `read` exits 3; an untouched history exits 0.
 *
 * The members who speak are SDK clients (stack.client) that stay connected, as the widget and
 * console do: one sender session per member, each verifying the transcript it then vouches for
 * in `seenSeq`/`seenHash`. The relay runs in this process (harness.ts); the editor writes beside
 * it (WAL), and the relay's next read sees the edit.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LatchkeyClient } from '@latchkey/client';
import type { Role } from '@latchkey/protocol';
import { startStack, until, type Stack } from './harness.ts';
import { MessagesDb, type StoredJson } from './messages-db.ts';

const BIN = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'apps',
  'cli',
  'bin',
  'latchkey.mjs',
);

let stack: Stack;
let tokens: string;
beforeAll(async () => {
  stack = await startStack();
  tokens = await mkdtemp(join(tmpdir(), 'latchkey-tokens-'));
});
afterAll(async () => {
  await stack.close();
  await rm(tokens, { recursive: true, force: true });
});

interface Read {
  code: number;
  lines: string[];
  stderr: string;
}

/** A participant token in a file of its own, mode 0600, as `--token-file` wants it. */
async function tokenFile(contact: string, participant: string, role: Role): Promise<string> {
  const file = join(tokens, `${contact}.${participant}.token`);
  await writeFile(file, `${await stack.token(contact, participant, role)}\n`, { mode: 0o600 });
  expect((await stat(file)).mode & 0o777).toBe(0o600);
  return file;
}

/** `latchkey read --token-file FILE [--json]` against the stack, as a child process. */
async function latchkeyRead(file: string, json: boolean): Promise<Read> {
  const args = [
    BIN,
    'read',
    '--token-file',
    file,
    '--relay',
    stack.relayUrl,
    '--keys',
    stack.keysUrl,
    ...(json ? ['--json'] : []),
  ];
  const env = { ...process.env };
  delete env.LATCHKEY_TOKEN;
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env, timeout: 25_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, lines: stdout.split('\n').filter((l) => l !== ''), stderr });
    });
  });
}

/** A message line with its time replaced by `TIME` (checked to be an ISO time first). */
const ISO_LINE = /^(\d+) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (.*)$/;
const untimed = (line: string): string => line.replace(ISO_LINE, '$1 TIME $2');

/** Both modes of `read` by `reader` (an agent of the contact), in parallel. */
async function readBoth(
  contact: string,
  reader = 'a1',
): Promise<{ text: Read; json: Read; rows: Record<string, unknown>[] }> {
  const file = await tokenFile(contact, reader, 'agent');
  const [text, json] = await Promise.all([latchkeyRead(file, false), latchkeyRead(file, true)]);
  const rows = json.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { text: { ...text, lines: text.lines.map(untimed) }, json, rows };
}

/** `latchkey send --token-file FILE TEXT` against the stack, as a child process. */
async function latchkeySend(file: string, message: string): Promise<Read> {
  const args = [
    BIN,
    'send',
    '--token-file',
    file,
    '--relay',
    stack.relayUrl,
    '--keys',
    stack.keysUrl,
    message,
  ];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 25_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, lines: stdout.split('\n').filter((l) => l !== ''), stderr });
    });
  });
}

/** A JSON row of a message shown as normal text. */
const message = (seq: number, sender: string, text: string): Record<string, unknown> => ({
  seq,
  sender,
  sentAt: expect.any(Number),
  text,
});

/** A member's SDK client, connected for the whole test. */
async function member(contact: string, participant: string, role: Role): Promise<LatchkeyClient> {
  return stack.client(await stack.token(contact, participant, role));
}

/** Every seq a client has processed (shown or failed), to wait for what it has seen. */
function seenBy(client: LatchkeyClient): number[] {
  const seqs: number[] = [];
  client.on('message', (m) => seqs.push(m.seq));
  client.on('failed', (f) => seqs.push(f.seq));
  return seqs;
}

/** Runs `fn` on the relay's live store, then checks the edit left it as the relay would. */
function edit(contact: string, fn: (db: MessagesDb) => void): void {
  const db = MessagesDb.open(stack.dir);
  try {
    fn(db);
    expect(db.problems(contact)).toEqual([]);
  } finally {
    db.close();
  }
}

// Each case starts two or three CLI processes (~2.5 s each on an idle machine): room for a busy one.
describe(
  'latchkey read over a messages.db edited by the relay operator',
  { timeout: 60_000 },
  () => {
    it('an untouched history: normal lines, exit 0', async () => {
      const v = await member('db-clean', 'v1', 'visitor');
      const a = await member('db-clean', 'a1', 'agent');
      await v.send('Hello, where is my order?');
      await a.send('Hi! Let me check.');
      const { text, json, rows } = await readBoth('db-clean');
      expect(text).toEqual({
        code: 0,
        lines: ['1 TIME v1: Hello, where is my order?', '2 TIME a1: Hi! Let me check.'],
        stderr: '',
      });
      expect(json.code).toBe(0);
      expect(rows).toEqual([
        message(1, 'v1', 'Hello, where is my order?'),
        message(2, 'a1', 'Hi! Let me check.'),
      ]);
    });

    it('a duplicated (replayed) row: SEQ INTEGRITY REPLAYED, the text never printed again, exit 3', async () => {
      const v = await member('db-replay', 'v1', 'visitor');
      await v.send('please refund');
      await v.send('thanks');
      edit('db-replay', (db) => expect(db.replay('db-replay', 1)).toBe(3));
      const { text, json, rows } = await readBoth('db-replay');
      expect(text).toMatchObject({
        code: 3,
        lines: ['1 TIME v1: please refund', '2 TIME v1: thanks', '3 INTEGRITY REPLAYED from v1'],
      });
      expect(json.code).toBe(3);
      expect(rows).toEqual([
        message(1, 'v1', 'please refund'),
        message(2, 'v1', 'thanks'),
        { seq: 3, sender: 'v1', error: 'INTEGRITY', code: 'REPLAYED' },
      ]);
      expect(json.lines.join('\n').split('please refund')).toHaveLength(2); // once, at seq 1
    });

    it('a row replayed into the middle: REPLAYED there, the rest after it as it was', async () => {
      const v = await member('db-replay-mid', 'v1', 'visitor');
      await v.send('please refund');
      await v.send('thanks');
      edit('db-replay-mid', (db) => expect(db.replay('db-replay-mid', 1, { at: 2 })).toBe(2));
      const file = await tokenFile('db-replay-mid', 'a1', 'agent');
      const text = await latchkeyRead(file, false);
      expect(text.code).toBe(3);
      expect(text.lines.map(untimed)).toEqual([
        '1 TIME v1: please refund',
        '2 INTEGRITY REPLAYED from v1',
        '3 TIME v1: thanks',
      ]);
    });

    it('two rows of one sender swapped: both SEQ INTEGRITY REORDERED, neither text printed, exit 3', async () => {
      const v = await member('db-swap', 'v1', 'visitor');
      const a = await member('db-swap', 'a1', 'agent');
      await a.send('How can I help?');
      await v.send('please refund');
      await v.send('do not refund');
      edit('db-swap', (db) => db.swap('db-swap', 2, 3));
      const { text, json, rows } = await readBoth('db-swap');
      expect(text).toMatchObject({
        code: 3,
        lines: [
          '1 TIME a1: How can I help?',
          '2 INTEGRITY REORDERED from v1',
          '3 INTEGRITY REORDERED from v1',
        ],
      });
      expect(json.code).toBe(3);
      expect(rows).toEqual([
        message(1, 'a1', 'How can I help?'),
        { seq: 2, sender: 'v1', error: 'INTEGRITY', code: 'REORDERED' },
        { seq: 3, sender: 'v1', error: 'INTEGRITY', code: 'REORDERED' },
      ]);
    });

    it('a row deleted and the rest renumbered: SEQ INTEGRITY MISSING 1, exit 3', async () => {
      const v = await member('db-renum', 'v1', 'visitor');
      for (const t of ['m1', 'm2', 'm3']) await v.send(t);
      edit('db-renum', (db) => db.deleteAndRenumber('db-renum', 2));
      const { text, json, rows } = await readBoth('db-renum');
      expect(text).toMatchObject({
        code: 3,
        lines: ['1 TIME v1: m1', '2 INTEGRITY MISSING 1 from v1'],
      });
      expect(json.code).toBe(3);
      expect(rows).toEqual([
        message(1, 'v1', 'm1'),
        { seq: 2, sender: 'v1', error: 'INTEGRITY', code: 'MISSING', missing: 1 },
      ]);
    });

    it('a cut tail: unseen until a member who had seen the cut part speaks, then SEQ INTEGRITY MISSING 2 from it, exit 3', async () => {
      const v = await member('db-cut', 'v1', 'visitor');
      const a = await member('db-cut', 'a1', 'agent');
      const aSeen = seenBy(a);
      for (const t of ['m1', 'm2', 'please refund', 'to IBAN X']) await v.send(t);
      await until(() => aSeen.length === 4, 5000, 'the agent to see all four');
      edit('db-cut', (db) => expect(db.truncateAfter('db-cut', 2)).toBe(2));
      const file = await tokenFile('db-cut', 'a2', 'agent');
      // Nobody has spoken since: nothing shows the cut yet (the documented limit).
      const before = await latchkeyRead(file, false);
      expect([before.code, before.lines.map(untimed)]).toEqual([
        0,
        ['1 TIME v1: m1', '2 TIME v1: m2'],
      ]);
      expect((await a.send('done, refunded')).seq).toBe(3);
      const [text, json] = await Promise.all([latchkeyRead(file, false), latchkeyRead(file, true)]);
      expect(text).toMatchObject({
        code: 3,
        lines: [
          expect.stringMatching(ISO_LINE),
          expect.stringMatching(ISO_LINE),
          '3 INTEGRITY MISSING 2 from a1',
        ],
      });
      expect(text.lines.slice(0, 2).map(untimed)).toEqual(['1 TIME v1: m1', '2 TIME v1: m2']);
      expect(json.code).toBe(3);
      expect(json.lines.map((l) => JSON.parse(l) as unknown)).toEqual([
        message(1, 'v1', 'm1'),
        message(2, 'v1', 'm2'),
        { seq: 3, sender: 'a1', error: 'INTEGRITY', code: 'MISSING', missing: 2 },
      ]);
    });

    it('rewritten envelope fields: SEQ DECRYPT_FAILED from the sender the row names, exit 3', async () => {
      const v = await member('db-rewrite', 'v1', 'visitor');
      for (const t of [
        'intact',
        't-sentAt',
        't-ctr',
        't-seenSeq',
        't-prev',
        't-seenHash',
        't-senderId',
      ])
        await v.send(t);
      const flip = (s: unknown): string => {
        const text = String(s);
        return (text[0] === 'A' ? 'B' : 'A') + text.slice(1);
      };
      const rewrites: ((e: StoredJson) => StoredJson)[] = [
        (e) => ({ ...e, sentAt: (e.sentAt ?? 0) + 1 }),
        (e) => ({ ...e, ctr: Number(e.ctr) + 1 }),
        (e) => ({ ...e, seenSeq: Number(e.seenSeq) + 1 }),
        (e) => ({ ...e, prev: flip(e.prev) }),
        (e) => ({ ...e, seenHash: flip(e.seenHash) }),
        (e) => ({ ...e, senderId: 'a1' }),
      ];
      edit('db-rewrite', (db) =>
        rewrites.forEach((fn, i) => db.rewriteEnvelope('db-rewrite', i + 2, fn)),
      );
      const { text, json, rows } = await readBoth('db-rewrite', 'a2');
      const failed = ['v1', 'v1', 'v1', 'v1', 'v1', 'a1'].map(
        (sender, i) => `${i + 2} DECRYPT_FAILED from ${sender}`,
      );
      expect(text).toMatchObject({ code: 3, lines: ['1 TIME v1: intact', ...failed] });
      expect(json.code).toBe(3);
      expect(rows).toEqual([
        message(1, 'v1', 'intact'),
        ...['v1', 'v1', 'v1', 'v1', 'v1', 'a1'].map((sender, i) => ({
          seq: i + 2,
          sender,
          error: 'DECRYPT_FAILED',
        })),
      ]);
      expect(json.lines.join('\n')).not.toMatch(/t-(sentAt|ctr|seenSeq|prev|seenHash|senderId)/);
    });

    it('a new session that speaks at once vouches for what it received at join: two sessions swapped are caught', async () => {
      const first = await member('db-sessions', 'v1', 'visitor');
      await first.send('please refund');
      first.close();
      const second = await member('db-sessions', 'v1', 'visitor');
      await second.send('do not refund'); // right after connecting
      edit('db-sessions', (db) => db.swap('db-sessions', 1, 2));
      const { text } = await readBoth('db-sessions');
      expect(text.code).toBe(3);
      expect(text.lines.some((l) => / INTEGRITY (REORDERED|MISSING 1) from v1$/.test(l))).toBe(
        true,
      );
      expect(text.lines.join('\n')).not.toContain('do not refund');
    });

    it('latchkey send vouches for the history it received: a tail cut after it spoke is MISSING', async () => {
      const v = await member('db-cli-cut', 'v1', 'visitor');
      for (const t of ['m1', 'm2', 'm3', 'm4']) await v.send(t);
      v.close();
      const agentFile = await tokenFile('db-cli-cut', 'a1', 'agent');
      expect((await latchkeySend(agentFile, 'noted')).lines).toEqual(['5']);
      // The operator removes m3 and m4 and renumbers the agent's reply to 3.
      edit('db-cli-cut', (db) => {
        db.deleteAndRenumber('db-cli-cut', 3);
        db.deleteAndRenumber('db-cli-cut', 3);
      });
      const { text } = await readBoth('db-cli-cut', 'a2');
      expect(text).toMatchObject({
        code: 3,
        lines: ['1 TIME v1: m1', '2 TIME v1: m2', '3 INTEGRITY MISSING 2 from a1'],
      });
    });

    it('a row deleted without renumbering: MISSING for the hole, and every later message still printed', async () => {
      const v = await member('db-hole', 'v1', 'visitor');
      for (const t of ['m1', 'm2', 'm3', 'm4']) await v.send(t);
      const db = MessagesDb.open(stack.dir);
      try {
        db.raw().prepare('DELETE FROM messages WHERE contact_id = ? AND seq = 2').run('db-hole');
      } finally {
        db.close();
      }
      const { text, rows } = await readBoth('db-hole');
      expect(text.code).toBe(3);
      expect(text.lines[1]).toBe('2 INTEGRITY MISSING 1 from ?');
      expect(text.lines.at(-1)).toMatch(/^4 TIME v1: m4$|^4 INTEGRITY /);
      expect(text.lines).toHaveLength(4);
      expect(rows[1]).toEqual({
        seq: 2,
        sender: '?',
        error: 'INTEGRITY',
        code: 'MISSING',
        missing: 1,
      });
    });
  },
);
