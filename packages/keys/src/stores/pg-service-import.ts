/**
 * Moving a key service from its SQLite state to the shared PostgreSQL state (issue 17): the
 * membership table of `keys/access.db` (contacts, participants, owed rotations) and its epoch
 * dates are copied into the shared tables once, while those are still empty, in one transaction
 * under a table lock, so that a participant kicked before the move is not admitted again after
 * it. The SQLite file is read only and left as it was. The old access log stays in its own file
 * (`latchkey keys audit` still verifies it); the shared chain starts anew.
 */
import { openSqlite } from '@latchkey/storage/sqlite';
import { transaction } from '@latchkey/storage/postgres';
import type { PgServiceState } from './pg-service-state.ts';
import { pgUnavailable } from './pg-access.ts';

type Row = Record<string, string | number | null>;

/** The tables copied, in an order that satisfies their foreign keys, with their columns. */
const COLUMNS = {
  contacts: ['contact_id', 'state', 'created_at', 'closed_at', 'expires_at'],
  participants: ['contact_id', 'participant_id', 'role', 'state', 'joined_at', 'left_at'],
  owed_rotations: [
    'contact_id',
    'action',
    'participant_id',
    'seq',
    'since',
    'state',
    'epoch',
    'attempts',
    'last_error',
  ],
  epoch_times: ['contact_id', 'epoch', 'since'],
} as const;
const TABLES = Object.keys(COLUMNS) as (keyof typeof COLUMNS)[];

/**
 * Copies the membership of the SQLite file at `path` into the shared tables when they hold no
 * contact yet. @returns the number of contacts copied (0 when the shared table was in use).
 * @throws LatchkeyError KEY_UNAVAILABLE when either database fails (nothing is copied).
 */
export async function importSqliteMembership(
  state: Pick<PgServiceState, 'pool'>,
  path: string,
): Promise<number> {
  const db = openSqlite(path, { readonly: true });
  let data: Partial<Record<(typeof TABLES)[number], Row[]>>;
  try {
    const present = new Set(
      db
        .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .all()
        .map((r) => r.name),
    );
    data = {};
    for (const t of TABLES)
      if (present.has(t))
        data[t] = db.prepare<[], Row>(`SELECT ${COLUMNS[t].join(', ')} FROM ${t}`).all();
  } finally {
    db.close();
  }
  const contacts = data.contacts?.length ?? 0;
  if (contacts === 0) return 0;
  try {
    return await transaction(state.pool, async (q) => {
      await q.query('LOCK TABLE contacts IN EXCLUSIVE MODE');
      const used = await q.query('SELECT 1 FROM contacts LIMIT 1');
      if (used.rows.length > 0) return 0;
      for (const t of TABLES) {
        for (const row of data[t] ?? []) {
          const cols = COLUMNS[t];
          await q.query(
            `INSERT INTO ${t} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING`,
            cols.map((c) => row[c]),
          );
        }
      }
      return contacts;
    });
  } catch (err) {
    throw pgUnavailable(err, 'membership import');
  }
}
