/**
 * The key service's state on PostgreSQL shared by several key services (issue 17): one signing
 * key and one access-log chain for all, membership decided once, a contact's work serialised
 * across processes, a role held by one process and taken over when it goes.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { testPostgres } from '../_postgres.ts';
import { openPgServiceState, type PgServiceState } from '../../src/stores/pg-service-state.ts';

const master = new Uint8Array(32).fill(7);
const server = await testPostgres('key service state on PostgreSQL');
afterAll(() => server?.stop());

async function two(url: string): Promise<[PgServiceState, PgServiceState]> {
  // Started together, as two key services of a cluster would be.
  const [a, b] = await Promise.all([
    openPgServiceState({ url, masterKey: master }),
    openPgServiceState({ url, masterKey: master }),
  ]);
  return [a, b];
}

describe.skipIf(!server)('key service state on PostgreSQL', () => {
  it('gives every key service the same signing key, created once', async () => {
    const url = await server!.newDatabase();
    const [a, b] = await two(url);
    try {
      expect(Buffer.from(a.signingKey.publicKey).equals(Buffer.from(b.signingKey.publicKey))).toBe(
        true,
      );
      expect([a.signingKey.created, b.signingKey.created].filter(Boolean)).toHaveLength(1);
      const c = await openPgServiceState({ url, masterKey: master });
      expect(c.signingKey.created).toBe(false);
      await c.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('refuses a key service with another master key', async () => {
    const url = await server!.newDatabase();
    const a = await openPgServiceState({ url, masterKey: master });
    await a.close();
    const err = await openPgServiceState({ url, masterKey: new Uint8Array(32).fill(8) }).catch(
      (e: unknown) => e,
    );
    expect(LatchkeyError.is(err, 'KEY_UNAVAILABLE')).toBe(true);
  });

  it('chains the appends of two key services into one log with no gap or fork', async () => {
    const url = await server!.newDatabase();
    const [a, b] = await two(url);
    try {
      const rec = (i: number, by: string) => ({
        contactId: `c${i % 7}`,
        participantId: by,
        epoch: 0,
        time: 1_700_000_000_000 + i,
        outcome: 'granted' as const,
      });
      await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          i % 2 === 0
            ? a.accessLog.appendMany([rec(i, 'a'), rec(i + 1000, 'a')])
            : b.accessLog.append(rec(i, 'b')),
        ),
      );
      const verdict = await a.accessLog.verify();
      expect(verdict).toMatchObject({ ok: true, count: 90 });
      expect(await b.accessLog.verify({ head: await a.accessLog.head() })).toMatchObject({
        ok: true,
      });
      // The chain is keyed: each service computes the same hashes (one shared log key).
      const chained = await b.accessLog.listChained(0, 100);
      expect(chained).toHaveLength(90);
      expect(a.accessLog.algorithm).toBe('hmac-sha256');
      // Append-only at the database.
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await expect(c.query('DELETE FROM key_access_log WHERE seq = 5')).rejects.toThrow(
          /append-only/,
        );
      } finally {
        await c.end();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('records one owed rotation when two key services receive the same kick', async () => {
    const url = await server!.newDatabase();
    const [a, b] = await two(url);
    try {
      const now = Date.now();
      await a.access.admit({ contactId: 'k1', participantId: 'v1', role: 'visitor' }, now);
      const [x, y] = await Promise.all([
        a.access.kick('k1', 'v1', now, { oweRotation: true }),
        b.access.kick('k1', 'v1', now, { oweRotation: true }),
      ]);
      expect(x.participants.find((p) => p.participantId === 'v1')?.state).toBe('kicked');
      expect(y.participants.find((p) => p.participantId === 'v1')?.state).toBe('kicked');
      const owed = await b.access.owedRotations();
      expect(owed).toHaveLength(1);
      expect(owed[0]).toMatchObject({ contactId: 'k1', seq: 1, state: 'owed' });
      expect(await a.access.rotationDone('k1', 1, 1)).toBe(true);
      expect(await b.access.rotationDone('k1', 1, 1)).toBe(false);
      // The same admission rules as on SQLite: a kicked participant stays out.
      await expect(
        b.access.admit({ contactId: 'k1', participantId: 'v1', role: 'visitor' }, now),
      ).rejects.toMatchObject({ code: 'FORBIDDEN' });
      // Epoch dates: the first to date an epoch wins.
      expect(await a.clock.since('k1', 0, 100)).toBe(100);
      expect(await b.clock.since('k1', 0, 200)).toBe(100);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('admits a burst in one transaction: a refused holder fails alone, two services racing both finish', async () => {
    const url = await server!.newDatabase();
    const [a, b] = await two(url);
    try {
      const now = Date.now();
      await a.access.kick('full', 'gone', now);
      const burst = (by: string) =>
        Array.from({ length: 30 }, (_, i) => ({
          contactId: `burst${(i * 7) % 11}`,
          participantId: `${by}${i}`,
          role: 'visitor' as const,
        }));
      const [ra, rb] = await Promise.all([
        a.access.admitMany(
          [...burst('a'), { contactId: 'full', participantId: 'gone', role: 'visitor' }],
          now,
        ),
        b.access.admitMany(burst('b').reverse(), now),
      ]);
      expect(ra.at(-1)).toMatchObject({ code: 'FORBIDDEN' });
      expect(ra.slice(0, -1).every((r) => !(r instanceof LatchkeyError))).toBe(true);
      expect(rb.every((r) => !(r instanceof LatchkeyError))).toBe(true);
      // Each answer is its own holder's contact, in the order asked.
      expect(ra.slice(0, -1).map((r) => (r as { contactId: string }).contactId)).toEqual(
        burst('a').map((p) => p.contactId),
      );
      const all = await a.access.listContacts({ limit: 100 }, now);
      expect(all.filter((c) => c.contactId.startsWith('burst'))).toHaveLength(11);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("runs a contact's work in one key service at a time", async () => {
    const url = await server!.newDatabase();
    const [a, b] = await two(url);
    try {
      let inside = 0;
      let most = 0;
      const work = async (): Promise<void> => {
        inside++;
        most = Math.max(most, inside);
        // A round trip to the database while holding the lock: the other side must wait.
        await a.access.contact('c', Date.now());
        inside--;
      };
      await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).locks.run('same', work)),
      );
      expect(most).toBe(1);
      // Other contacts are not held up by it.
      let other = false;
      await a.locks.run('x', () => b.locks.run('y', async () => void (other = true)));
      expect(other).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('gives a role to one key service and hands it over when that one goes', async () => {
    const url = await server!.newDatabase();
    const [a, b] = await two(url);
    try {
      expect(await a.leadership.held('webhooks')).toBe(true);
      expect(await b.leadership.held('webhooks')).toBe(false);
      expect(await a.leadership.held('webhooks')).toBe(true);
      await a.close();
      expect(await b.leadership.held('webhooks')).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
