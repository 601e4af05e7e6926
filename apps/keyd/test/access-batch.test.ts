/**
 * The access log's group commit (access-batch.ts): the hand-outs of one loop turn are appended in
 * one transaction, each caller resolved with its own record once committed; a bad record fails
 * alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KeyAccessLog, SqliteAccessStore } from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { accessLogBatch, admissionBatch } from '../src/access-batch.ts';

let dir: string;
let log: KeyAccessLog;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-access-batch-'));
  log = new KeyAccessLog({ path: join(dir, 'keys.db') });
});

afterEach(() => {
  log.close();
  rmSync(dir, { recursive: true, force: true });
});

const rec = (i: number, participantId = `p${i}`) => ({
  contactId: `c${i % 3}`,
  epoch: 0,
  participantId,
  time: 1_000 + i,
  outcome: 'granted' as const,
});

describe('access log group commit', () => {
  it('commits the appends of one loop turn in one transaction, in order', async () => {
    const many = vi.spyOn(log, 'appendMany');
    const batch = accessLogBatch(log);
    const stored = await Promise.all([0, 1, 2, 3, 4].map((i) => batch.submit(rec(i))));
    expect(many).toHaveBeenCalledTimes(1);
    expect(stored.map((s) => [s.seq, s.participantId])).toEqual(
      [0, 1, 2, 3, 4].map((i) => [i + 1, `p${i}`]),
    );
    expect(log.verify()).toMatchObject({ ok: true, count: 5 });
    // The next turn is a batch of its own.
    await batch.submit(rec(5));
    expect(many).toHaveBeenCalledTimes(2);
    expect(log.verify()).toMatchObject({ ok: true, count: 6 });
  });

  it('a malformed record fails alone; a closed log fails every caller', async () => {
    const batch = accessLogBatch(log);
    const results = await Promise.allSettled([
      batch.submit(rec(0)),
      batch.submit(rec(1, 'not an id')),
      batch.submit(rec(2)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const bad = results[1] as PromiseRejectedResult;
    expect(LatchkeyError.is(bad.reason, 'BAD_REQUEST')).toBe(true);
    expect(log.list().map((r) => r.participantId)).toEqual(['p0', 'p2']);
    const pending = batch.submit(rec(3));
    log.close();
    const err: unknown = await pending.catch((e: unknown) => e);
    expect(LatchkeyError.is(err, 'KEY_UNAVAILABLE')).toBe(true);
  });

  it('admits the first requests of one loop turn in one transaction; a refused one fails alone', async () => {
    const access = new SqliteAccessStore({ path: join(dir, 'access.db'), maxParticipants: 2 });
    try {
      const many = vi.spyOn(access, 'admitMany');
      const batch = admissionBatch(access);
      const who = (contactId: string, participantId: string, role: 'visitor' | 'agent') => ({
        contactId,
        participantId,
        role,
      });
      const results = await Promise.allSettled([
        batch.submit(who('c1', 'v1', 'visitor')),
        batch.submit(who('c1', 'a1', 'agent')),
        batch.submit(who('c1', 'a2', 'agent')),
        batch.submit(who('c2', 'v2', 'visitor')),
        batch.submit(who('c2', 'v2', 'agent')),
      ]);
      expect(many).toHaveBeenCalledTimes(1);
      expect(results.map((r) => r.status)).toEqual([
        'fulfilled',
        'fulfilled',
        'rejected',
        'fulfilled',
        'rejected',
      ]);
      const code = (r: PromiseSettledResult<unknown>) =>
        r.status === 'rejected' && LatchkeyError.is(r.reason) ? r.reason.code : undefined;
      expect([code(results[2]!), code(results[4]!)]).toEqual(['CONTACT_FULL', 'FORBIDDEN']);
      const members = (id: string) =>
        access.contact(id, Date.now())?.participants.map((p) => p.participantId);
      expect(members('c1')?.sort()).toEqual(['a1', 'v1']);
      expect(members('c2')).toEqual(['v2']);
    } finally {
      access.close();
    }
  });
});
