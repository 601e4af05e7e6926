/**
 * The agent queue's state (docs/admin-api.md "Queue"): contacts waiting or claimed, and each
 * agent's availability and capacity. A claim is one IMMEDIATE transaction that checks the agent
 * (available, under capacity) and takes the contact with one conditional UPDATE (`agent_id IS
 * NULL`), so of any number of concurrent claims, in this process or another sharing the file,
 * exactly one wins. `QueueStore` is the seam for other databases; only SQLite is written (a
 * PostgreSQL store would run the same statements with `SELECT ... FOR UPDATE` on the agent row).
 * Its own file (`queue.db`), apart from the message store: the queue is the relay's admin
 * primitive, and membership changes go through the contact store (queue-api.ts).
 */
import {
  LatchkeyError,
  QUEUE_DEFAULT_CAPACITY,
  QUEUE_LIST_LIMIT,
  QUEUE_MAX_CAPACITY,
  type AgentState,
  type Availability,
  type QueueEntry,
} from '@latchkey/protocol';
import {
  isSqliteError,
  migrateSqlite,
  openSqlite,
  type SqliteDatabase,
} from '@latchkey/storage/sqlite';

/** What the queue routes need; every method is one transaction. */
export interface QueueStore {
  /** Adds a waiting contact; an existing one (waiting or claimed) is returned unchanged. */
  enqueue(contactId: string, now: number): QueueEntry | Promise<QueueEntry>;
  entry(contactId: string): QueueEntry | null | Promise<QueueEntry | null>;
  /** Forgets a contact (closed or expired: nobody will claim it). */
  remove(contactId: string): void | Promise<void>;
  /** Waiting contacts, oldest first. */
  waiting(limit: number): QueueEntry[] | Promise<QueueEntry[]>;
  /** @throws LatchkeyError NOT_FOUND, CONFLICT (claimed), FORBIDDEN (away), QUOTA_EXCEEDED (capacity). */
  claim(contactId: string, agentId: string, now: number): QueueEntry | Promise<QueueEntry>;
  /** Back to waiting if `agentId` holds it. @throws NOT_FOUND, CONFLICT (another holds it or none). */
  release(contactId: string, agentId: string): QueueEntry | Promise<QueueEntry>;
  /**
   * From its holder to `to` (capacity and availability of `to` checked like a claim).
   * @throws NOT_FOUND, CONFLICT (waiting, or already `to`'s), FORBIDDEN, QUOTA_EXCEEDED.
   */
  transfer(
    contactId: string,
    to: string,
    now: number,
  ): { entry: QueueEntry; from: string } | Promise<{ entry: QueueEntry; from: string }>;
  /** Sets the holder unconditionally (undoing a transfer the membership rules refused). */
  setHolder(
    contactId: string,
    agentId: string,
    claimedAt: number,
  ): QueueEntry | Promise<QueueEntry>;
  agent(agentId: string): AgentState | Promise<AgentState>;
  setAgent(
    agentId: string,
    set: { availability?: Availability | undefined; capacity?: number | undefined },
    now: number,
  ): AgentState | Promise<AgentState>;
  /** The agent's contacts, oldest claim first. */
  agentContacts(agentId: string): QueueEntry[] | Promise<QueueEntry[]>;
  close(): void | Promise<void>;
}

/** Step `i` migrates user_version `i` to `i + 1`. */
export const QUEUE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE queue_contacts (
     contact_id TEXT PRIMARY KEY,
     created_at INTEGER NOT NULL,
     agent_id   TEXT,
     claimed_at INTEGER
   ) STRICT, WITHOUT ROWID;
   CREATE INDEX queue_waiting ON queue_contacts (created_at) WHERE agent_id IS NULL;
   CREATE INDEX queue_agent ON queue_contacts (agent_id, claimed_at) WHERE agent_id IS NOT NULL;
   CREATE TABLE queue_agents (
     agent_id     TEXT PRIMARY KEY,
     availability TEXT NOT NULL CHECK (availability IN ('available', 'away')),
     capacity     INTEGER NOT NULL CHECK (capacity >= 0),
     updated_at   INTEGER NOT NULL
   ) STRICT, WITHOUT ROWID;`,
];

interface Row {
  contact_id: string;
  created_at: number;
  agent_id: string | null;
  claimed_at: number | null;
}

const toEntry = (r: Row): QueueEntry => ({
  contactId: r.contact_id,
  createdAt: r.created_at,
  agentId: r.agent_id,
  claimedAt: r.claimed_at,
});

export interface SqliteQueueStoreOptions {
  /** Database file (created 0600), or ':memory:'. */
  path: string;
  /** Capacity of an agent that never set one (default QUEUE_DEFAULT_CAPACITY). */
  defaultCapacity?: number;
}

export class SqliteQueueStore implements QueueStore {
  readonly #db: SqliteDatabase;
  readonly #defaultCapacity: number;
  #closed = false;

  constructor(opts: SqliteQueueStoreOptions) {
    const cap = opts.defaultCapacity ?? QUEUE_DEFAULT_CAPACITY;
    if (!Number.isInteger(cap) || cap < 0 || cap > QUEUE_MAX_CAPACITY)
      throw new RangeError('defaultCapacity');
    this.#defaultCapacity = cap;
    const db = openSqlite(opts.path, { private: true, synchronous: 'FULL' });
    try {
      migrateSqlite(db, QUEUE_MIGRATIONS, `queue ${opts.path}`, { code: 'KEY_UNAVAILABLE' });
    } catch (err) {
      db.close();
      throw err;
    }
    this.#db = db;
  }

  #row(contactId: string): Row | undefined {
    return this.#db.prepare('SELECT * FROM queue_contacts WHERE contact_id = ?').get(contactId) as
      Row | undefined;
  }

  #need(contactId: string): Row {
    const r = this.#row(contactId);
    if (!r) throw new LatchkeyError('NOT_FOUND', 'contact not in the queue');
    return r;
  }

  #agent(agentId: string): AgentState {
    const a = this.#db
      .prepare('SELECT availability, capacity FROM queue_agents WHERE agent_id = ?')
      .get(agentId) as { availability: Availability; capacity: number } | undefined;
    const { n } = this.#db
      .prepare('SELECT count(*) AS n FROM queue_contacts WHERE agent_id = ?')
      .get(agentId) as { n: number };
    return {
      agentId,
      availability: a?.availability ?? 'available',
      capacity: a?.capacity ?? this.#defaultCapacity,
      active: n,
    };
  }

  /** Refuses an agent who is away or full. */
  #mayTake(agentId: string): void {
    const a = this.#agent(agentId);
    if (a.availability !== 'available') throw new LatchkeyError('FORBIDDEN', 'agent is away');
    if (a.active >= a.capacity) throw new LatchkeyError('QUOTA_EXCEEDED', 'agent is at capacity');
  }

  #take(contactId: string, agentId: string, now: number, from: string | null): Row {
    const r = this.#need(contactId);
    if (from === null ? r.agent_id !== null : r.agent_id !== from)
      throw new LatchkeyError('CONFLICT', 'contact already claimed');
    this.#mayTake(agentId);
    const changed = this.#db
      .prepare(
        `UPDATE queue_contacts SET agent_id = ?, claimed_at = ?
          WHERE contact_id = ? AND agent_id IS ?`,
      )
      .run(agentId, now, contactId, from).changes;
    if (changed !== 1) throw new LatchkeyError('CONFLICT', 'contact already claimed');
    return this.#need(contactId);
  }

  enqueue(contactId: string, now: number): QueueEntry {
    return this.#tx(() => {
      this.#db
        .prepare(
          `INSERT INTO queue_contacts (contact_id, created_at) VALUES (?, ?)
           ON CONFLICT (contact_id) DO NOTHING`,
        )
        .run(contactId, now);
      return toEntry(this.#need(contactId));
    });
  }

  entry(contactId: string): QueueEntry | null {
    return this.#tx(() => {
      const r = this.#row(contactId);
      return r ? toEntry(r) : null;
    });
  }

  remove(contactId: string): void {
    this.#tx(() => {
      this.#db.prepare('DELETE FROM queue_contacts WHERE contact_id = ?').run(contactId);
    });
  }

  waiting(limit: number): QueueEntry[] {
    const n = Math.min(Math.max(1, Math.floor(limit)), QUEUE_LIST_LIMIT);
    return this.#tx(() =>
      (
        this.#db
          .prepare(
            `SELECT * FROM queue_contacts WHERE agent_id IS NULL
              ORDER BY created_at, contact_id LIMIT ?`,
          )
          .all(n) as Row[]
      ).map(toEntry),
    );
  }

  claim(contactId: string, agentId: string, now: number): QueueEntry {
    return this.#tx(() => toEntry(this.#take(contactId, agentId, now, null)));
  }

  release(contactId: string, agentId: string): QueueEntry {
    return this.#tx(() => {
      const r = this.#need(contactId);
      if (r.agent_id !== agentId)
        throw new LatchkeyError('CONFLICT', 'contact not held by this agent');
      this.#db
        .prepare(
          `UPDATE queue_contacts SET agent_id = NULL, claimed_at = NULL
            WHERE contact_id = ? AND agent_id = ?`,
        )
        .run(contactId, agentId);
      return toEntry(this.#need(contactId));
    });
  }

  transfer(contactId: string, to: string, now: number): { entry: QueueEntry; from: string } {
    return this.#tx(() => {
      const from = this.#need(contactId).agent_id;
      if (from === null) throw new LatchkeyError('CONFLICT', 'contact is waiting: claim it');
      if (from === to) throw new LatchkeyError('CONFLICT', 'contact already held by this agent');
      return { entry: toEntry(this.#take(contactId, to, now, from)), from };
    });
  }

  setHolder(contactId: string, agentId: string, claimedAt: number): QueueEntry {
    return this.#tx(() => {
      this.#need(contactId);
      this.#db
        .prepare('UPDATE queue_contacts SET agent_id = ?, claimed_at = ? WHERE contact_id = ?')
        .run(agentId, claimedAt, contactId);
      return toEntry(this.#need(contactId));
    });
  }

  agent(agentId: string): AgentState {
    return this.#tx(() => this.#agent(agentId));
  }

  setAgent(
    agentId: string,
    set: { availability?: Availability | undefined; capacity?: number | undefined },
    now: number,
  ): AgentState {
    return this.#tx(() => {
      const cur = this.#agent(agentId);
      this.#db
        .prepare(
          `INSERT INTO queue_agents (agent_id, availability, capacity, updated_at)
           VALUES (?, ?, ?, ?)
           ON CONFLICT (agent_id) DO UPDATE SET availability = excluded.availability,
             capacity = excluded.capacity, updated_at = excluded.updated_at`,
        )
        .run(agentId, set.availability ?? cur.availability, set.capacity ?? cur.capacity, now);
      return this.#agent(agentId);
    });
  }

  agentContacts(agentId: string): QueueEntry[] {
    return this.#tx(() =>
      (
        this.#db
          .prepare(
            `SELECT * FROM queue_contacts WHERE agent_id = ?
              ORDER BY claimed_at, contact_id LIMIT ?`,
          )
          .all(agentId, QUEUE_MAX_CAPACITY) as Row[]
      ).map(toEntry),
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** One IMMEDIATE transaction (the write lock first, so concurrent claimers serialise). */
  #tx<T>(run: () => T): T {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'queue closed');
    try {
      return this.#db.transaction(run).immediate();
    } catch (err) {
      if (LatchkeyError.is(err)) throw err;
      throw new LatchkeyError('KEY_UNAVAILABLE', 'queue unavailable', {
        cause: err,
        detail: isSqliteError(err) ? err.code : err instanceof Error ? err.name : typeof err,
      });
    }
  }
}
