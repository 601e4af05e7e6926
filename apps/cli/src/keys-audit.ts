/**
 * `latchkey keys audit` (docs/key-management.md): prints every record of the key access log and
 * verifies its hash chain, optionally against a head printed by an earlier audit; with
 * `--verify-stream`, verifies a stream a SIEM received instead (verify-stream.ts). With
 * `--keys-store postgres://...` (or LATCHKEY_KEYS_STORE) it audits the one log the key services
 * of a cluster share, whose key is kept there wrapped under the master key.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { keyServicePaths } from '@latchkey/keyd';
import {
  KeyAccessLog,
  readPrivateFile,
  resolveMasterKey,
  type AccessLogHead,
  type AccessLogStore,
} from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';
import { dataDir } from './config.ts';
import { verifyStreamFile, type VerifyStreamFlags } from './verify-stream.ts';
import { EXIT, UsageError } from './usage.ts';
import { keyStoreUrl } from './keys-rewrap.ts';

type Out = (line: string) => void;

export interface AuditFlags extends VerifyStreamFlags {
  data?: string | undefined;
  json?: boolean | undefined;
  head?: string | undefined;
  'keys-store'?: string | undefined;
}

/**
 * `latchkey keys audit`: prints every record of the key access log and verifies the chain.
 * Exit 1 with `error: TAMPERED ...` when a record was changed, removed, inserted or reordered.
 */
export async function keysAudit(
  flags: AuditFlags,
  out: Out,
  err: Out,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<number> {
  // A stream a SIEM received, rather than the log itself (docs/siem.md).
  if (flags['verify-stream'] !== undefined) return verifyStreamFile(flags, out, err);
  const paths = keyServicePaths(dataDir(flags.data));
  let head: AccessLogHead | undefined;
  if (flags.head !== undefined) {
    const m = /^(\d{1,15}):([0-9a-f]{64})$/.exec(flags.head);
    if (!m?.[1] || !m[2])
      throw new UsageError('--head must be SEQ:HASH (as printed by an earlier audit)');
    head = { seq: Number(m[1]), hash: m[2] };
  }
  const url = keyStoreUrl(flags, env);
  let log: AccessLogStore;
  let close: () => Promise<void>;
  if (url !== undefined) {
    const file = join(dataDir(flags.data), 'master.key');
    if (!env.LATCHKEY_MASTER_KEY && !existsSync(file))
      throw new LatchkeyError(
        'NOT_FOUND',
        `no master key (LATCHKEY_MASTER_KEY or ${file}) to open the key database with`,
      );
    const master = resolveMasterKey({ env, file });
    const { openPgServiceState } = await import('@latchkey/keys/postgres');
    const state = await openPgServiceState({ url, masterKey: master.key, maxConnections: 1 });
    master.key.fill(0);
    state.signingKey.secretKey.fill(0);
    state.outboxKey.fill(0);
    log = state.accessLog;
    close = () => state.close();
  } else {
    if (!existsSync(paths.db) || !existsSync(paths.accessLogKey)) {
      throw new LatchkeyError('NOT_FOUND', `no key access log in ${paths.dir}`);
    }
    const key = readPrivateFile(paths.accessLogKey, 32);
    const local = new KeyAccessLog({ path: paths.db, key });
    key.fill(0);
    log = local;
    close = async () => local.close();
  }
  try {
    let after = 0;
    for (;;) {
      const page = await log.list({ afterSeq: after, limit: 1000 });
      for (const r of page) {
        out(
          flags.json
            ? JSON.stringify({
                seq: r.seq,
                time: r.time,
                contactId: r.contactId,
                epoch: r.epoch,
                participantId: r.participantId,
                outcome: r.outcome,
                hash: r.hash,
              })
            : `${r.seq} ${new Date(r.time).toISOString()} ${r.contactId} epoch=${r.epoch} ${r.participantId} ${r.outcome}`,
        );
        after = r.seq;
      }
      if (page.length < 1000) break;
    }
    const verdict = await log.verify(head === undefined ? {} : { head });
    if (!verdict.ok) {
      err(`error: TAMPERED key access log broken at record ${verdict.seq}: ${verdict.reason}`);
      return EXIT.error;
    }
    out(
      flags.json
        ? JSON.stringify({ verified: true, count: verdict.count, head: verdict.head })
        : `verified: ${verdict.count} records, head ${verdict.head.seq}:${verdict.head.hash}`,
    );
    return EXIT.ok;
  } finally {
    await close();
  }
}
