/**
 * `latchkey keys rewrap` (docs/key-management.md): master-key rotation of the internal key
 * manager, online through the running key service or offline on its files; with an external
 * key manager, a re-wrap of every key in place under the newest version of its KEK. The new
 * master key comes from the environment or a file, never from a flag.
 */
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import { keyServicePaths, rotateMasterKeyOffline } from '@latchkey/keyd';
import {
  createPrivateFile,
  decodeSecretText,
  readPrivateFile,
  resolveMasterKey,
} from '@latchkey/keys';
import { ADMIN_PATHS, LatchkeyError, RewrapResponse } from '@latchkey/protocol';
import { call, target, type AdminFlags } from './admin.ts';
import { dataDir, endpoints } from './config.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;
type Env = Readonly<Record<string, string | undefined>>;

export interface RewrapFlags {
  data?: string | undefined;
  keys?: string | undefined;
  relay?: string | undefined;
  offline?: boolean | undefined;
}

/**
 * `latchkey keys rewrap`: re-wraps every content key of the internal key manager (and the
 * signing key) under a new master key. The new key is LATCHKEY_NEW_MASTER_KEY, or generated into
 * `DIR/master.key.new` and moved over `DIR/master.key` once done (the old file stays until
 * then). Online through the running key service when it answers, else (or with --offline) on
 * the files. Messages are not touched. With an external key manager (`/healthz` backend
 * `http`), the running key service re-wraps every key in place under the newest version of the
 * enterprise's KEK (the key manager's `rewrap`), after the enterprise rotated it.
 */
export async function keysRewrap(
  flags: RewrapFlags,
  out: Out,
  env: Env = process.env,
): Promise<number> {
  const dir = dataDir(flags.data);
  let online: { keys: string; authorization: string; backend: string } | undefined;
  if (flags.offline !== true) {
    try {
      await endpoints({ relay: flags.relay, keys: flags.keys }, dir);
      const t = await target(flags as AdminFlags);
      const health = await fetch(`${t.keys}/healthz`, { signal: AbortSignal.timeout(3000) }).then(
        async (r) => ((await r.json()) as { backend?: unknown }).backend,
        () => null,
      );
      if (health !== null)
        online = {
          keys: t.keys,
          authorization: t.authorization,
          backend: typeof health === 'string' ? health : 'internal',
        };
    } catch {
      // no running key service known: offline
    }
  }
  if (online?.backend === 'http') {
    const res = RewrapResponse.parse(
      await call(online.keys, ADMIN_PATHS.rewrap, online.authorization, {}),
    );
    out(`rewrapped ${res.rewrapped} content keys (online, in place at the key manager)`);
    return EXIT.ok;
  }
  const paths = keyServicePaths(dir);
  const masterFile = join(dir, 'master.key');
  const nextFile = `${masterFile}.new`;
  const current = resolveMasterKey({ env, file: masterFile });
  if (current.created) throw new LatchkeyError('NOT_FOUND', `no master key in ${dir}`);
  const fromEnv = env.LATCHKEY_NEW_MASTER_KEY;
  let next: Uint8Array;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    next = decodeSecretText(fromEnv, 'LATCHKEY_NEW_MASTER_KEY', { exactBytes: 32 });
  } else if (current.source === 'env') {
    throw new UsageError(
      'the master key comes from LATCHKEY_MASTER_KEY: give the new one in LATCHKEY_NEW_MASTER_KEY',
    );
  } else {
    // A run that stopped half-way left its new key here: use it again.
    if (!existsSync(nextFile)) createPrivateFile(nextFile, randomBytes(32));
    next = readPrivateFile(nextFile, 32);
  }
  let mode = 'offline';
  let rewrapped: number;
  if (online) {
    const res = RewrapResponse.parse(
      await call(online.keys, ADMIN_PATHS.rewrap, online.authorization, {
        newMasterKey: toBase64Url(next),
      }),
    );
    rewrapped = res.rewrapped;
    mode = 'online';
  } else {
    rewrapped = (
      await rotateMasterKeyOffline({ paths, masterKey: current.key, newMasterKey: next })
    ).rewrapped;
  }
  current.key.fill(0);
  next.fill(0);
  if (current.source !== 'env' && (fromEnv === undefined || fromEnv.trim() === '')) {
    // The key service may have put it in place already (a shred completion meanwhile).
    if (existsSync(nextFile)) renameSync(nextFile, masterFile);
    out(`master-key: ${masterFile} (replaced)`);
  } else {
    out('master-key: set LATCHKEY_MASTER_KEY to the value of LATCHKEY_NEW_MASTER_KEY from now on');
  }
  out(`rewrapped ${rewrapped} content keys (${mode})`);
  return EXIT.ok;
}
