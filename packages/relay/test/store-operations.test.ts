/**
 * Store operations (docs/guarantees.md "Operations"): integrity check at open, a newer schema
 * refused untouched, an inaccessible data directory refused untouched (checked as an unprivileged
 * user in a child process, since root passes every permission check), and a full disk
 * (SQLITE_FULL through `PRAGMA max_page_count` on the store's own connection): sends fail with
 * UNAVAILABLE, nothing stored is lost, and sends go through again once space returns.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { createRelay, SqliteMessageStore, StoreError, type Relay } from '../src/index.ts';
import { SECRET, TestClient, fakeEnvelope } from './_helpers.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const RELAY_MAIN = join(ROOT, 'apps', 'relay', 'src', 'main.ts');

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'latchkey-ops-'));
  path = join(dir, 'messages.db');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Names and SHA-256 of every file in the directory. */
function snapshot(d: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(d).sort())
    out[f] = createHash('sha256')
      .update(readFileSync(join(d, f)))
      .digest('hex');
  return out;
}

/** The next ack or error frame, whichever comes first. */
async function ackOrError(
  c: TestClient,
): Promise<Extract<TestClient['frames'][number], { type: 'ack' | 'error' }>> {
  for (let i = 0; i < 300; i++) {
    const j = c.frames.findIndex((f) => f.type === 'ack' || f.type === 'error');
    if (j >= 0)
      return c.frames.splice(j, 1)[0] as Extract<
        TestClient['frames'][number],
        { type: 'ack' | 'error' }
      >;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no ack or error');
}

function openError(fn: () => unknown): StoreError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    expect(LatchkeyError.is(err, 'UNAVAILABLE')).toBe(true);
    return err as StoreError;
  }
  throw new Error('expected the store to refuse to open');
}

describe('store open checks', () => {
  it('refuses a database with a newer user_version with NEWER_SCHEMA and leaves it byte for byte as it was', async () => {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE future (x INTEGER); INSERT INTO future VALUES (1);');
    db.pragma('user_version = 99');
    db.close();
    const before = snapshot(dir);
    const err = openError(() => new SqliteMessageStore({ path }));
    expect(err.reason).toBe('NEWER_SCHEMA');
    expect(err.message).toContain('schema version 99');
    expect(err.message).toContain(path);
    expect(snapshot(dir)).toEqual(before);
  });

  it('runs quick_check at open and refuses a damaged file with CORRUPT, untouched', async () => {
    const store = new SqliteMessageStore({ path });
    await store.appendBatch(Array.from({ length: 200 }, () => fakeEnvelope('c1', 'a')));
    await store.close();
    // Overwrite a page in the middle of the file (not the header): a damaged b-tree.
    const bytes = readFileSync(path);
    expect(bytes.length).toBeGreaterThan(4096 * 4);
    bytes.fill(0x5a, 4096 * 2 + 100, 4096 * 2 + 3000);
    writeFileSync(path, bytes);
    const before = snapshot(dir);
    const err = openError(() => new SqliteMessageStore({ path }));
    expect(err.reason).toBe('CORRUPT');
    expect(snapshot(dir)).toEqual(before);
    // A file that is no database at all.
    writeFileSync(
      path,
      'this is not a database, but it is long enough to look like one. '.repeat(200),
    );
    expect(openError(() => new SqliteMessageStore({ path })).reason).toBe('CORRUPT');
  });

  it('says which directory is missing, and creates nothing', async () => {
    const missing = join(dir, 'nope', 'messages.db');
    const err = openError(() => new SqliteMessageStore({ path: missing }));
    expect(err.reason).toBe('NOT_ACCESSIBLE');
    expect(err.message).toContain(join(dir, 'nope'));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a read-only data directory: the relay process exits 1 with a clear error and touches nothing', async () => {
    if (process.getuid?.() !== 0) return; // needs root to run the child as another user
    // The data directory belongs to root; the relay runs as nobody, for whom it is read-only.
    const data = join(dir, 'data');
    await mkdir(join(data, 'relay'), { recursive: true });
    const store = new SqliteMessageStore({ path: join(data, 'relay', 'messages.db') });
    await store.appendBatch([fakeEnvelope('c1', 'a'), fakeEnvelope('c1', 'b')]);
    await store.close();
    await chmod(dir, 0o755);
    chmodSync(data, 0o755);
    chmodSync(join(data, 'relay'), 0o755);
    for (const f of readdirSync(join(data, 'relay'))) chmodSync(join(data, 'relay', f), 0o644);
    const before = snapshot(join(data, 'relay'));
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', RELAY_MAIN, '--data', data, '--host', '127.0.0.1', '--port', '0'],
        {
          cwd: ROOT,
          uid: 65534,
          gid: 65534,
          env: {
            ...process.env,
            HOME: '/tmp',
            LATCHKEY_API_SECRET: Buffer.from(SECRET).toString('base64url'),
          },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('failed to start (UNAVAILABLE)');
    expect(run.stderr).toMatch(/is not readable and writable by this process \((EACCES|EPERM)\)/);
    expect(run.stderr).toContain('nothing was changed');
    expect(snapshot(join(data, 'relay'))).toEqual(before);
  }, 30_000);
});

describe('disk full (SQLITE_FULL)', () => {
  it('store: a full database fails the append with UNAVAILABLE/FULL, keeps every earlier message, and takes appends again once space returns', async () => {
    let db: Database.Database | undefined;
    const store = new SqliteMessageStore({ path, onOpen: (d) => (db = d) });
    const first = await store.appendBatch(
      Array.from({ length: 50 }, () => fakeEnvelope('c1', 'a')),
    );
    // No room to grow: every page that exists is the last one there will be.
    db!.pragma(`max_page_count = ${db!.pragma('page_count', { simple: true }) as number}`);
    let err: unknown;
    for (let i = 0; i < 100 && !err; i++) {
      err = await store.appendBatch(Array.from({ length: 20 }, () => fakeEnvelope('c1', 'a'))).then(
        () => undefined,
        (e: unknown) => e,
      );
    }
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).reason).toBe('FULL');
    expect(LatchkeyError.is(err, 'UNAVAILABLE')).toBe(true);
    const head = await store.head('c1');
    const page = await store.history('c1', 0, 10_000);
    expect(page.envelopes.map((e) => e.seq)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    expect(page.envelopes.slice(0, 50).map((e) => e.msgId)).toEqual(
      first.map((r) => (r.ok ? r.envelope.msgId : '')),
    );
    // Space returns.
    db!.pragma('max_page_count = 1073741823');
    const [again] = await store.appendBatch([fakeEnvelope('c1', 'a')]);
    expect(again).toMatchObject({ ok: true, seq: head + 1 });
    await store.close();
  });

  it('relay: sends are refused with UNAVAILABLE while full; the same send is acked once space returns; history is intact', async () => {
    let db: Database.Database | undefined;
    const store = new SqliteMessageStore({ path, onOpen: (d) => (db = d) });
    const relay: Relay = createRelay({ store, apiSecret: SECRET });
    const { url } = await relay.listen({ host: '127.0.0.1', port: 0 });
    try {
      const sender = await TestClient.as(url, 'c1', 'v1');
      const acked: string[] = [];
      for (let i = 0; i < 20; i++) {
        const e = fakeEnvelope('c1', 'v1');
        sender.sendEnvelope(e);
        expect(await sender.next('ack')).toMatchObject({ msgId: e.msgId, seq: i + 1 });
        acked.push(e.msgId);
      }
      db!.pragma(`max_page_count = ${db!.pragma('page_count', { simple: true }) as number}`);
      // Large envelopes fill the last free pages quickly.
      let refused: ReturnType<typeof fakeEnvelope> | undefined;
      for (let i = 0; i < 200 && !refused; i++) {
        const e = fakeEnvelope('c1', 'v1', {
          ciphertext: Buffer.alloc(8000, i).toString('base64url'),
        });
        sender.sendEnvelope(e);
        const f = await ackOrError(sender);
        if (f.type === 'error') {
          expect(f).toMatchObject({ code: 'UNAVAILABLE', ref: { msgId: e.msgId } });
          refused = e;
        } else acked.push(e.msgId);
      }
      expect(refused).toBeDefined();
      // The connection stays usable; a reader sees every acked message, nothing else.
      const reader = await TestClient.as(url, 'c1', 'a1', 'agent');
      reader.send({ v: 1, type: 'history', id: 'h', since: 0, limit: 500 });
      const h = await reader.next('history');
      expect(h.envelopes.map((e) => e.msgId)).toEqual(acked);
      // Space returns: the client's retry of the refused send is acked with the next seq.
      db!.pragma('max_page_count = 1073741823');
      sender.sendEnvelope(refused!);
      expect(await sender.next('ack')).toMatchObject({
        msgId: refused!.msgId,
        seq: acked.length + 1,
        duplicate: false,
      });
      sender.close();
      reader.close();
    } finally {
      await relay.close();
      await store.close();
    }
  });
});
