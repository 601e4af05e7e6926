/**
 * The key access log on PostgreSQL (service-state.ts `AccessLogStore`): one hash chain across
 * every key service that writes it. An append takes a transaction-scoped advisory lock, reads
 * the newest record and inserts the new ones chained from it, so two writers never chain from
 * the same record and the chain has no gap or fork; the records of one call commit together.
 * The hash is the SQLite log's (access-record.ts), so `verify` and the streams read both alike.
 */
import { LatchkeyError } from '@latchkey/protocol';
import { transaction, type PgPool } from '@latchkey/storage/postgres';
import {
  chainRow,
  chainedFrom,
  storedRecord,
  verifyChain,
  type AccessLogRow as Row,
  type ChainRow,
} from '../access-chain.ts';
import {
  ACCESS_LOG_GENESIS,
  GENESIS,
  accessRecordHash,
  checkedRecord,
  hex,
  type AccessChainAlgorithm,
  type AccessRecord,
  type ChainedAccessRecord,
  type StoredAccessRecord,
} from '../access-record.ts';
import type { AccessLogHead, AccessLogStore, AccessLogVerdict } from '../service-state.ts';
import { pgUnavailable } from './pg-access.ts';

/** Advisory lock key of the chain's head ("lkalog"). */
const CHAIN_LOCK = 0x6c6b616c6f67;

export class PgKeyAccessLog implements AccessLogStore {
  readonly #pool: PgPool;
  readonly #key: Uint8Array | undefined;
  readonly #listeners = new Set<(r: StoredAccessRecord) => void>();
  #closed = false;

  /** @throws RangeError for a log key shorter than 32 bytes. */
  constructor(pool: PgPool, opts: { key?: Uint8Array } = {}) {
    if (opts.key !== undefined && opts.key.length < 32)
      throw new RangeError('log key must be at least 32 bytes');
    this.#pool = pool;
    this.#key = opts.key === undefined ? undefined : Uint8Array.from(opts.key);
  }

  get algorithm(): AccessChainAlgorithm {
    return this.#key === undefined ? 'sha256' : 'hmac-sha256';
  }

  #hash(prev: Uint8Array, seq: number, r: AccessRecord): Uint8Array {
    return accessRecordHash(prev, seq, r, this.#key);
  }

  #live(): void {
    if (this.#closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'key access log is closed');
  }

  onAppend(fn: (r: StoredAccessRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => void this.#listeners.delete(fn);
  }

  async append(r: AccessRecord): Promise<StoredAccessRecord> {
    const [one] = await this.appendMany([r]);
    return one!;
  }

  /**
   * Appends `records` in order in one transaction, chained from the newest record of any writer.
   * @throws LatchkeyError BAD_REQUEST for a malformed record (nothing appended), KEY_UNAVAILABLE
   *   when the database fails.
   */
  async appendMany(records: readonly AccessRecord[]): Promise<StoredAccessRecord[]> {
    this.#live();
    const checked = records.map(checkedRecord);
    if (checked.length === 0) return [];
    let out: StoredAccessRecord[];
    try {
      out = await transaction(this.#pool, async (q) => {
        await q.query('SELECT pg_advisory_xact_lock($1)', [CHAIN_LOCK]);
        const last = await q.query<{ seq: number; hash: Uint8Array }>(
          'SELECT seq, hash FROM key_access_log ORDER BY seq DESC LIMIT 1',
        );
        let seq = last.rows[0]?.seq ?? 0;
        let prev: Uint8Array = last.rows[0]?.hash ?? GENESIS;
        const cols: unknown[][] = [[], [], [], [], [], [], []];
        const result = checked.map((record) => {
          seq++;
          const hash = this.#hash(prev, seq, record);
          prev = hash;
          const values = [
            seq,
            record.contactId,
            record.epoch,
            record.participantId,
            record.time,
            record.outcome,
            Buffer.from(hash),
          ];
          values.forEach((v, i) => cols[i]!.push(v));
          return { ...record, seq, hash: hex(hash) };
        });
        await q.query(
          `INSERT INTO key_access_log (seq, contact_id, epoch, participant_id, time, outcome, hash)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bytea[])`,
          cols,
        );
        return result;
      });
    } catch (err) {
      throw pgUnavailable(err, 'key access log');
    }
    for (const s of out) {
      for (const fn of this.#listeners) {
        try {
          fn(s);
        } catch {
          // A listener never fails an append.
        }
      }
    }
    return out;
  }

  async #rows<R>(text: string, args: unknown[]): Promise<R[]> {
    this.#live();
    try {
      return (await this.#pool.query(text, args)).rows as R[];
    } catch (err) {
      throw pgUnavailable(err, 'key access log');
    }
  }

  async list(
    opts: { afterSeq?: number; contactId?: string; limit?: number } = {},
  ): Promise<StoredAccessRecord[]> {
    const limit = Math.min(Math.max(opts.limit ?? 1000, 1), 10_000);
    const rows =
      opts.contactId === undefined
        ? await this.#rows<Row>(
            'SELECT * FROM key_access_log WHERE seq > $1 ORDER BY seq LIMIT $2',
            [opts.afterSeq ?? 0, limit],
          )
        : await this.#rows<Row>(
            'SELECT * FROM key_access_log WHERE seq > $1 AND contact_id = $2 ORDER BY seq LIMIT $3',
            [opts.afterSeq ?? 0, opts.contactId, limit],
          );
    return rows.map(storedRecord);
  }

  async listChained(afterSeq: number, limit = 500): Promise<ChainedAccessRecord[]> {
    const n = Math.min(Math.max(limit, 1), 10_000);
    const prevRow = await this.#rows<{ hash: Uint8Array }>(
      'SELECT hash FROM key_access_log WHERE seq <= $1 ORDER BY seq DESC LIMIT 1',
      [afterSeq],
    );
    return chainedFrom(
      prevRow[0] === undefined ? ACCESS_LOG_GENESIS : hex(prevRow[0].hash),
      await this.list({ afterSeq: Math.max(afterSeq, 0), limit: n }),
    );
  }

  async cursor(name: string): Promise<number> {
    const rows = await this.#rows<{ seq: number }>(
      'SELECT seq FROM key_access_log_cursors WHERE name = $1',
      [name],
    );
    return rows[0]?.seq ?? 0;
  }

  async setCursor(name: string, seq: number): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError('cursor must be a seq');
    await this.#rows(
      'INSERT INTO key_access_log_cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq',
      [name, seq],
    );
  }

  async head(): Promise<AccessLogHead> {
    const rows = await this.#rows<{ seq: number; hash: Uint8Array }>(
      'SELECT seq, hash FROM key_access_log ORDER BY seq DESC LIMIT 1',
      [],
    );
    return { seq: rows[0]?.seq ?? 0, hash: hex(rows[0]?.hash ?? GENESIS) };
  }

  /** Walks the whole chain, 5,000 records per read. */
  async verify(opts: { head?: AccessLogHead } = {}): Promise<AccessLogVerdict> {
    const all: ChainRow[] = [];
    for (let after = 0; ;) {
      const rows = await this.#rows<Row>(
        'SELECT * FROM key_access_log WHERE seq > $1 ORDER BY seq LIMIT 5000',
        [after],
      );
      for (const r of rows) all.push(chainRow(r));
      if (rows.length < 5000) break;
      after = rows.at(-1)!.seq;
    }
    return verifyChain(all, (prev, seq, r) => this.#hash(prev, seq, r), opts.head);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#key?.fill(0);
  }
}
