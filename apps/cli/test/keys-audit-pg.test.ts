/**
 * `latchkey keys audit --keys-store postgres://...`: the one access log the key services of a
 * cluster share is printed and verified with the log key kept (wrapped) in the key database; a
 * database superuser who edits a record (switching off the append-only trigger) is caught.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openPgServiceState } from '@latchkey/keys/postgres';
import { testPostgres } from '../../../packages/keys/test/_postgres.ts';
import { keysAudit } from '../src/keys-audit.ts';

const master = new Uint8Array(32).fill(9);
const env = { LATCHKEY_MASTER_KEY: Buffer.from(master).toString('base64url') };
const server = await testPostgres('keys audit on PostgreSQL');
afterAll(() => server?.stop());

describe.skipIf(!server)('keys audit --keys-store', () => {
  it('verifies the shared chain and reports an edited record as TAMPERED', async () => {
    const url = await server!.newDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'latchkey-audit-pg-'));
    try {
      const state = await openPgServiceState({ url, masterKey: master });
      for (let i = 1; i <= 5; i++)
        await state.accessLog.append({
          contactId: 'c1',
          participantId: `p${i}`,
          epoch: 0,
          time: 1_700_000_000_000 + i,
          outcome: 'granted',
        });
      await state.close();
      const lines: string[] = [];
      const errs: string[] = [];
      const run = () =>
        keysAudit(
          { data: dir, 'keys-store': url },
          (l) => lines.push(l),
          (l) => errs.push(l),
          env,
        );
      expect(await run()).toBe(0);
      expect(lines.at(-1)).toMatch(/^verified: 5 records, head 5:[0-9a-f]{64}$/);
      expect(lines.filter((l) => l.includes(' c1 epoch=0 '))).toHaveLength(5);

      // A superuser of the key database: switches the trigger off and edits a record.
      const raw = await openPgServiceState({ url, masterKey: master, maxConnections: 1 });
      try {
        await raw.pool.query('ALTER TABLE key_access_log DISABLE TRIGGER key_access_log_no_change');
        await raw.pool.query(
          "UPDATE key_access_log SET participant_id = 'someone-else' WHERE seq = 3",
        );
      } finally {
        await raw.close();
      }
      lines.length = 0;
      expect(await run()).toBe(1);
      expect(errs.at(-1)).toMatch(/^error: TAMPERED key access log broken at record 3/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('needs the master key to open the key database', async () => {
    const url = await server!.newDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'latchkey-audit-pg-'));
    try {
      await expect(
        keysAudit(
          { data: dir, 'keys-store': url },
          () => undefined,
          () => undefined,
          {},
        ),
      ).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
