/**
 * The key service's membership table and epoch dates on PostgreSQL (service-state.ts
 * `AccessTable`, `EpochTimes`), shared by every key service of a cluster. The membership logic
 * is the SQLite table's (access-flows.ts), run in one PostgreSQL transaction per call; the
 * contact's row is locked (`FOR UPDATE`) before anything of it is decided, so key services
 * deciding at once decide one at a time. Failures are KEY_UNAVAILABLE, as on SQLite.
 */
import { LatchkeyError, type ContactInfo, type Role } from '@latchkey/protocol';
import { runAsync, type ListContactsOptions } from '@latchkey/storage';
import { pgSql, runPostgres, transaction, type PgPool } from '@latchkey/storage/postgres';
import { AccessFlows, type AccessFlow, type OwedRotation } from '../access-flows.ts';
import type { Admission, AccessTable, EpochTimes } from '../service-state.ts';

/** A database failure as the key service's error (typed refusals pass as they are). */
export function pgUnavailable(err: unknown, what: string): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  return new LatchkeyError('KEY_UNAVAILABLE', `${what} unavailable`, {
    cause: err,
    detail: `${typeof code === 'string' ? `${code}: ` : ''}${err instanceof Error ? err.message : String(err)}`,
  });
}

export class PgAccessStore implements AccessTable {
  readonly #pool: PgPool;
  readonly #flows: AccessFlows;
  readonly maxParticipants: number;
  readonly contactTtlMs: number;

  /** @throws RangeError on a non-positive limit. */
  constructor(pool: PgPool, opts: { maxParticipants?: number; contactTtlMs?: number } = {}) {
    this.#pool = pool;
    this.#flows = new AccessFlows(opts);
    ({ maxParticipants: this.maxParticipants, contactTtlMs: this.contactTtlMs } =
      this.#flows.policy);
  }

  async #tx<T>(flow: AccessFlow<T>): Promise<T> {
    try {
      return await runPostgres(this.#pool, flow);
    } catch (err) {
      throw pgUnavailable(err, 'access table');
    }
  }

  admit(p: Admission, now: number): Promise<ContactInfo> {
    return this.#tx(this.#flows.admit(p, now));
  }

  /**
   * The admissions of a join burst in one transaction (one commit, one connection), each in a
   * savepoint of its own so that one refused leaves the others admitted, taken in contact order
   * so that two key services admitting overlapping bursts lock contacts in the same order.
   * @throws LatchkeyError KEY_UNAVAILABLE when the transaction fails (nothing is admitted).
   */
  async admitMany(ps: readonly Admission[], now: number): Promise<(ContactInfo | LatchkeyError)[]> {
    const order = ps
      .map((_, i) => i)
      .sort((a, b) =>
        ps[a]!.contactId < ps[b]!.contactId ? -1 : ps[a]!.contactId > ps[b]!.contactId ? 1 : a - b,
      );
    try {
      return await transaction(this.#pool, async (q) => {
        const out: (ContactInfo | LatchkeyError)[] = new Array<ContactInfo | LatchkeyError>(
          ps.length,
        );
        const sql = pgSql(q);
        for (const i of order) {
          await q.query('SAVEPOINT admission');
          try {
            out[i] = await runAsync(this.#flows.admit(ps[i]!, now)(sql));
            await q.query('RELEASE SAVEPOINT admission');
          } catch (err) {
            if (!LatchkeyError.is(err)) throw err;
            await q.query('ROLLBACK TO SAVEPOINT admission');
            out[i] = err;
          }
        }
        return out;
      });
    } catch (err) {
      throw pgUnavailable(err, 'access table');
    }
  }

  contact(contactId: string, now: number): Promise<ContactInfo | null> {
    return this.#tx(this.#flows.contact(contactId, now));
  }

  listContacts(opts: ListContactsOptions, now: number): Promise<ContactInfo[]> {
    return this.#tx(this.#flows.list(opts, now));
  }

  closeContact(contactId: string, now: number): Promise<ContactInfo> {
    return this.#tx(this.#flows.close(contactId, now));
  }

  setExpiry(contactId: string, expiresAt: number, now: number): Promise<ContactInfo> {
    return this.#tx(this.#flows.setExpiry(contactId, expiresAt, now));
  }

  kick(
    contactId: string,
    participantId: string,
    now: number,
    opts: { oweRotation?: boolean } = {},
  ): Promise<ContactInfo> {
    return this.#tx(this.#flows.kick(contactId, participantId, now, opts.oweRotation === true));
  }

  invite(contactId: string, participantId: string, role: Role, now: number): Promise<ContactInfo> {
    return this.#tx(this.#flows.admit({ contactId, participantId, role }, now));
  }

  transfer(
    contactId: string,
    from: string,
    to: string,
    now: number,
    opts: { oweRotation?: boolean } = {},
  ): Promise<ContactInfo> {
    return this.#tx(this.#flows.transfer(contactId, from, to, now, opts.oweRotation === true));
  }

  owedRotation(contactId: string): Promise<OwedRotation | undefined> {
    return this.#tx(this.#flows.owed(contactId));
  }

  owedRotations(): Promise<OwedRotation[]> {
    return this.#tx(this.#flows.allOwed());
  }

  rotationDone(contactId: string, seq: number, epoch: number | null): Promise<boolean> {
    return this.#tx(this.#flows.rotationDone(contactId, seq, epoch));
  }

  rotationFailed(contactId: string, seq: number, error: string): Promise<void> {
    return this.#tx(this.#flows.rotationFailed(contactId, seq, error));
  }

  expireDue(now: number): Promise<string[]> {
    return this.#tx(this.#flows.expireDue(now));
  }

  /** The pool belongs to the service state (pg-service-state.ts), which ends it. */
  close(): void {}
}

/** When each epoch began, in table `epoch_times` (epoch-clock.ts on SQLite). */
export class PgEpochClock implements EpochTimes {
  readonly #pool: PgPool;

  constructor(pool: PgPool) {
    this.#pool = pool;
  }

  async #query<R>(text: string, args: unknown[]): Promise<R[]> {
    try {
      return (await this.#pool.query(text, args)).rows as R[];
    } catch (err) {
      throw pgUnavailable(err, 'epoch clock');
    }
  }

  async since(contactId: string, epoch: number, now: number): Promise<number> {
    // One statement: the first to date an epoch wins, every later one reads that date.
    const rows = await this.#query<{ since: number }>(
      `WITH ins AS (
         INSERT INTO epoch_times (contact_id, epoch, since) VALUES ($1, $2, $3)
         ON CONFLICT (contact_id, epoch) DO NOTHING RETURNING since)
       SELECT since FROM ins UNION ALL
       SELECT since FROM epoch_times WHERE contact_id = $1 AND epoch = $2`,
      [contactId, epoch, now],
    );
    return rows[0]?.since ?? now;
  }

  epochs(contactId: string): Promise<{ epoch: number; since: number }[]> {
    return this.#query(
      'SELECT epoch, since FROM epoch_times WHERE contact_id = $1 ORDER BY epoch',
      [contactId],
    );
  }

  async began(contactId: string, epoch: number, at: number): Promise<void> {
    await this.#query(
      `INSERT INTO epoch_times (contact_id, epoch, since) VALUES ($1, $2, $3)
       ON CONFLICT (contact_id, epoch) DO UPDATE SET since = excluded.since`,
      [contactId, epoch, at],
    );
  }

  async forget(contactId: string): Promise<void> {
    await this.#query('DELETE FROM epoch_times WHERE contact_id = $1', [contactId]);
  }

  close(): void {}
}
