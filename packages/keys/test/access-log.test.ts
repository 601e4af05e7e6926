import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { codeOf, tempDir } from './_helpers.ts';
import { KeyAccessLog } from '../src/access-log.ts';
import { openInternalKeyManager } from '../src/wrappers/internal.ts';

let dir: string;
let cleanup: () => void;
let path: string;
const logs: KeyAccessLog[] = [];

function openLog(key?: Uint8Array): KeyAccessLog {
  const log = new KeyAccessLog({ path, ...(key === undefined ? {} : { key }) });
  logs.push(log);
  return log;
}

/** Edits the table behind the log's back, as an attacker with the file would. */
function tamper(sql: string): void {
  const raw = new Database(path);
  raw.exec('DROP TRIGGER key_access_log_no_update; DROP TRIGGER key_access_log_no_delete;');
  raw.exec(sql);
  raw.close();
}

function fill(log: KeyAccessLog, n = 5): void {
  for (let i = 0; i < n; i++) {
    log.append({
      contactId: `c${i % 2}`,
      epoch: i,
      participantId: `p${i}`,
      time: 1_000 + i,
      outcome: i === 3 ? 'denied' : 'granted',
    });
  }
}

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  path = join(dir, 'keys', 'keys.db');
});

afterEach(() => {
  for (const l of logs.splice(0)) l.close();
  cleanup();
});

describe('key access log', () => {
  it('appends a hash chain in the key database and verifies it', async () => {
    const km = await openInternalKeyManager({ path, masterKey: new Uint8Array(32).fill(7) });
    await km.getContentKey('c0');
    const log = openLog();
    expect(log.verify()).toEqual({ ok: true, count: 0, head: { seq: 0, hash: '0'.repeat(64) } });
    fill(log);
    const v = log.verify();
    expect(v).toMatchObject({ ok: true, count: 5, head: log.head() });
    expect(log.list({ contactId: 'c1' }).map((r) => r.seq)).toEqual([2, 4]);
    expect(log.list({ afterSeq: 3 })).toHaveLength(2);
    expect(log.list()[3]).toMatchObject({
      participantId: 'p3',
      outcome: 'denied',
      epoch: 3,
      time: 1003,
    });
    // The key store still works beside it, and a second connection continues the same chain.
    expect((await km.getContentKey('c0')).epoch).toBe(0);
    await km.close();
    const other = openLog();
    other.append({
      contactId: 'c9',
      epoch: 0,
      participantId: 'p9',
      time: 2_000,
      outcome: 'unavailable',
    });
    expect(log.verify()).toMatchObject({ ok: true, count: 6 });
  });

  it('can be opened before the key store creates the file', async () => {
    const log = openLog();
    log.append({ contactId: 'c1', epoch: 0, participantId: 'p1', time: 1, outcome: 'granted' });
    const km = await openInternalKeyManager({ path, masterKey: new Uint8Array(32).fill(7) });
    expect((await km.getContentKey('c1')).epoch).toBe(0);
    await km.close();
    expect(log.verify()).toMatchObject({ ok: true, count: 1 });
  });

  it('refuses updates and deletes through SQLite, and malformed records', async () => {
    const log = openLog();
    fill(log, 2);
    const raw = new Database(path);
    expect(() => raw.exec("UPDATE key_access_log SET outcome = 'granted'")).toThrow(/append-only/);
    expect(() => raw.exec('DELETE FROM key_access_log')).toThrow(/append-only/);
    raw.close();
    expect(
      await codeOf(() =>
        log.append({
          contactId: 'has space',
          epoch: 0,
          participantId: 'p',
          time: 1,
          outcome: 'granted',
        }),
      ),
    ).toBe('BAD_REQUEST');
    expect(
      await codeOf(() =>
        log.append({ contactId: 'c', epoch: -1, participantId: 'p', time: 1, outcome: 'granted' }),
      ),
    ).toBe('BAD_REQUEST');
  });

  it('appendMany: one chain with the single appends, and nothing of a batch with a bad record', async () => {
    const log = openLog();
    log.append({ contactId: 'c0', epoch: 0, participantId: 'p0', time: 1, outcome: 'granted' });
    const rec = (i: number) => ({
      contactId: `c${i}`,
      epoch: 0,
      participantId: `p${i}`,
      time: 10 + i,
      outcome: 'granted' as const,
    });
    const many = log.appendMany([rec(1), rec(2), rec(3)]);
    expect(many.map((r) => r.seq)).toEqual([2, 3, 4]);
    expect(log.verify()).toMatchObject({
      ok: true,
      count: 4,
      head: { seq: 4, hash: many[2]!.hash },
    });
    expect(
      await codeOf(() => log.appendMany([rec(5), { ...rec(6), participantId: 'bad id' }])),
    ).toBe('BAD_REQUEST');
    expect(log.list()).toHaveLength(4);
    expect(log.appendMany([])).toEqual([]);
  });

  it('detects a changed record', () => {
    const log = openLog();
    fill(log);
    tamper("UPDATE key_access_log SET outcome = 'granted' WHERE seq = 4");
    expect(log.verify()).toEqual({ ok: false, seq: 4, reason: 'record altered or chain broken' });
  });

  it('detects a removed record', () => {
    const log = openLog();
    fill(log);
    tamper('DELETE FROM key_access_log WHERE seq = 2');
    expect(log.verify()).toMatchObject({ ok: false, seq: 2 });
  });

  it('detects reordered records', () => {
    const log = openLog();
    fill(log);
    tamper(`UPDATE key_access_log SET seq = 100 WHERE seq = 2;
            UPDATE key_access_log SET seq = 2 WHERE seq = 3;
            UPDATE key_access_log SET seq = 3 WHERE seq = 100;`);
    expect(log.verify()).toMatchObject({ ok: false, seq: 2 });
  });

  it('keys the chain with a log key, and detects a cut tail with a noted head', () => {
    const key = new Uint8Array(32).fill(9);
    const log = openLog(key);
    fill(log);
    const head = log.head();
    tamper("UPDATE key_access_log SET participant_id = 'mallory' WHERE seq = 1");
    expect(log.verify()).toMatchObject({ ok: false, seq: 1 });
    // Without the log key the chain does not verify at all.
    const keyless = new KeyAccessLog({ path });
    logs.push(keyless);
    expect(keyless.verify()).toMatchObject({ ok: false, seq: 1 });

    const fresh = tempDir();
    try {
      const p2 = join(fresh.dir, 'k.db');
      const l2 = new KeyAccessLog({ path: p2, key });
      logs.push(l2);
      for (let i = 0; i < 4; i++)
        l2.append({
          contactId: 'c',
          epoch: 0,
          participantId: `p${i}`,
          time: i,
          outcome: 'granted',
        });
      const noted = l2.head();
      const raw = new Database(p2);
      raw.exec('DROP TRIGGER key_access_log_no_delete; DELETE FROM key_access_log WHERE seq = 4;');
      raw.close();
      expect(l2.verify()).toMatchObject({ ok: true, count: 3 });
      expect(l2.verify({ head: noted })).toMatchObject({ ok: false, seq: 4 });
    } finally {
      fresh.cleanup();
    }
    expect(head.seq).toBe(5);
  });

  it('stores no secrets: only ids, epoch, time, outcome and hash', () => {
    const log = openLog();
    fill(log, 1);
    const raw = new Database(path, { readonly: true });
    const cols = raw
      .prepare<[], { name: string }>("SELECT name FROM pragma_table_info('key_access_log')")
      .all();
    raw.close();
    expect(cols.map((c) => c.name)).toEqual([
      'seq',
      'contact_id',
      'epoch',
      'participant_id',
      'time',
      'outcome',
      'hash',
    ]);
  });
});
