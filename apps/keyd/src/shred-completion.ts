/**
 * Completing shreds in the key service (docs/key-management.md "Completing a shred"; issue 13):
 * a shred destroys a contact's keys at once, but they stay in any backup of the key store taken
 * before, wrapped under the KEK generation of that time. Completion re-wraps every live key under
 * a new generation and destroys the old one (`completeShreds` in @latchkey/keys), batched: every
 * shred since the last completion is covered by one rewrap.
 *
 * It runs on a schedule (`everyMs`, default hourly; only when a shred is pending), on
 * `POST /admin/v1/keys/shred-complete` (`latchkey shred --complete`), and offline on a stopped
 * key service's directory (`completeShredsOffline`). One at a time per process. Each completion
 * that retired a generation logs `shred complete: key generation G retired, N keys re-wrapped`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { fromBase64Url } from '@latchkey/crypto/codec';
import {
  completeShreds,
  formatShredCompletion,
  openInternalKeyManager,
  resolveMasterKey,
  type KekGenerations,
  type KeyManager,
  type ShredCompletion,
  type WrappedKeyManager,
} from '@latchkey/keys';
import {
  ADMIN_PATHS,
  LatchkeyError,
  ShredCompleteRequest,
  parseRequest,
  type ShredCompleteResponse,
} from '@latchkey/protocol';
import { createAdminAuthenticator, type AdminKey } from '@latchkey/tokens';
import {
  internalGenerations,
  masterKeyFileOf,
  openInternalRecovering,
} from './master-key-rotation.ts';

/** Default interval of the scheduled completion: the longest a shred stays incomplete. */
export const SHRED_COMPLETE_EVERY_MS = 3_600_000;

function isWrapped(km: KeyManager): km is WrappedKeyManager {
  return typeof (km as Partial<WrappedKeyManager>).keyGeneration === 'function';
}

export interface ShredCompleter {
  /**
   * Completes pending shreds now. `newMasterKey`: the next master key, for an internal key
   * manager whose master key comes from the environment.
   * @throws LatchkeyError NOT_FOUND when this key manager has no generations to retire (the
   *   enterprise's own service, the key-store model), CONFLICT when one is already running or a
   *   new master key is needed, KEY_UNAVAILABLE when the backend fails.
   */
  complete(newMasterKey?: Uint8Array): Promise<ShredCompletion>;
  stop(): void;
}

/**
 * The key service's completer. `generations(supplied)` gives the KEK generations of its key
 * manager (undefined: it has none Latchkey can retire).
 */
export function startShredCompleter(opts: {
  keyManager: KeyManager;
  generations: (supplied?: Uint8Array) => KekGenerations | undefined;
  /** 0: no schedule. */
  everyMs: number;
  log: (line: string) => void;
}): ShredCompleter {
  let running: Promise<ShredCompletion> | undefined;
  const complete = (supplied?: Uint8Array): Promise<ShredCompletion> => {
    if (running !== undefined)
      return Promise.reject(new LatchkeyError('CONFLICT', 'a shred completion is already running'));
    const km = opts.keyManager;
    const gens = opts.generations(supplied);
    if (!isWrapped(km) || gens === undefined) {
      return Promise.reject(
        new LatchkeyError(
          'NOT_FOUND',
          'this key manager has no key generations to retire (the enterprise retires its own)',
        ),
      );
    }
    running = completeShreds(km, gens).finally(() => {
      running = undefined;
    });
    return running;
  };
  let warned = 0;
  const tick = async (): Promise<void> => {
    const km = opts.keyManager;
    if (!isWrapped(km) || running !== undefined) return;
    try {
      const state = await km.keyGeneration();
      if (state.taintedSince === null && state.retiring.length === 0) return;
      const done = await complete();
      if (done.retired.length > 0) opts.log(formatShredCompletion(done));
    } catch (err) {
      // Logged at most hourly; the next round tries again.
      if (Date.now() - warned < 3_600_000) return;
      warned = Date.now();
      const e = LatchkeyError.is(err) ? `${err.code} ${err.message}` : String(err);
      opts.log(`shred pending: completion failed: ${e}`);
    }
  };
  const timer = opts.everyMs > 0 ? setInterval(() => void tick(), opts.everyMs) : undefined;
  timer?.unref();
  return { complete, stop: () => clearInterval(timer) };
}

/** POST /admin/v1/keys/shred-complete on the key service's admin API. */
export function registerShredCompleteRoute(
  app: FastifyInstance,
  opts: { completer: ShredCompleter; keys: readonly AdminKey[]; ipAllowlist?: readonly string[] },
): void {
  const auth = createAdminAuthenticator(
    opts.keys,
    opts.ipAllowlist === undefined ? {} : { ipAllowlist: opts.ipAllowlist },
  );
  app.post(
    ADMIN_PATHS.shredComplete,
    {
      onRequest: async (req) => {
        auth.check(req.headers.authorization, req.socket.remoteAddress);
      },
    },
    async (req): Promise<ShredCompleteResponse> => {
      const body = parseRequest(ShredCompleteRequest, req.body ?? {});
      const next = body.newMasterKey === undefined ? undefined : fromBase64Url(body.newMasterKey);
      try {
        return await opts.completer.complete(next);
      } finally {
        next?.fill(0);
      }
    },
  );
}

/**
 * Completes pending shreds of a stopped key service's internal key store under `dataDir`
 * (`latchkey shred --complete` when no key service answers). The master key comes from
 * `env.LATCHKEY_MASTER_KEY` or `dataDir/master.key`; `newMasterKey` as for the route.
 * @throws LatchkeyError KEY_UNAVAILABLE when the master key does not open the store, NOT_FOUND
 *   when there is no key store, CONFLICT when a new master key is needed.
 */
export async function completeShredsOffline(opts: {
  dataDir: string;
  env: Readonly<Record<string, string | undefined>>;
  newMasterKey?: Uint8Array;
}): Promise<ShredCompletion> {
  const dir = join(opts.dataDir, 'keys');
  const file = join(opts.dataDir, 'master.key');
  const fromEnv = opts.env.LATCHKEY_MASTER_KEY;
  if ((fromEnv === undefined || fromEnv.trim() === '') && !existsSync(file))
    throw new LatchkeyError('NOT_FOUND', `no master key in ${opts.dataDir}`);
  if (!existsSync(join(dir, 'keys.db')))
    throw new LatchkeyError('NOT_FOUND', `no key store in ${dir}`);
  const resolved = resolveMasterKey({ env: opts.env, file });
  const master = { key: resolved.key };
  const masterFile = resolved.source === 'file' ? masterKeyFileOf(file, master.key) : undefined;
  const signingKeyPath = join(dir, 'service-signing.key');
  const km = (await openInternalRecovering(
    (k) => openInternalKeyManager({ path: join(dir, 'keys.db'), masterKey: k }),
    {
      master,
      masterFile,
      signingKeyPath,
    },
  )) as WrappedKeyManager;
  try {
    return await completeShreds(
      km,
      internalGenerations({
        master,
        masterFile,
        signingKeyPath,
        ...(opts.newMasterKey === undefined ? {} : { supplied: opts.newMasterKey }),
      }),
    );
  } finally {
    await km.close();
    master.key.fill(0);
  }
}
