/**
 * `latchkey shred` (docs/key-management.md): crypto-shredding of one contact, key service first,
 * then relay; `--complete` retires the key generation the shredded keys were wrapped under,
 * online through the running key service or offline on the files of an internal key manager.
 */
import { toBase64Url } from '@latchkey/crypto/codec';
import { completeShredsOffline } from '@latchkey/keyd';
import { decodeSecretText, formatShredCompletion } from '@latchkey/keys';
import { ADMIN_PATHS, ShredCompleteResponse, ShredResponse } from '@latchkey/protocol';
import { call, moderateOrder, target, type AdminFlags } from './admin.ts';
import { dataDir, endpoints } from './config.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;
type Env = Readonly<Record<string, string | undefined>>;

export interface ShredFlags extends AdminFlags {
  contact?: string | undefined;
  complete?: boolean | undefined;
  offline?: boolean | undefined;
}

/**
 * `latchkey shred --contact ID`: the key service destroys every epoch of the contact's key
 * (tombstoned), then the relay deletes its ciphertext. Prints `shredded C (keys destroyed, N
 * messages deleted)`. `latchkey shred --complete` retires the key generation (see shredComplete).
 */
export async function shred(flags: ShredFlags, out: Out, env: Env = process.env): Promise<number> {
  if (flags.complete === true) {
    if (flags.contact !== undefined)
      throw new UsageError('--complete takes no --contact (it completes every pending shred)');
    return shredComplete(flags, out, env);
  }
  if (flags.offline === true) throw new UsageError('--offline goes with --complete');
  if (flags.contact === undefined || !/^[A-Za-z0-9_-]{1,64}$/.test(flags.contact)) {
    throw new UsageError('--contact must be 1-64 of [A-Za-z0-9_-]');
  }
  const contactId = flags.contact;
  const t = await target(flags);
  const { relay } = await moderateOrder(t, ADMIN_PATHS.shred(contactId), {}, ShredResponse);
  out(`shredded ${contactId} (keys destroyed, ${relay.messagesDeleted ?? 0} messages deleted)`);
  return EXIT.ok;
}

/** Whether a key service answers at the endpoints known for `flags`. */
async function onlineTarget(
  flags: AdminFlags,
  dir: string,
): Promise<{ keys: string; authorization: string } | undefined> {
  try {
    await endpoints({ relay: flags.relay, keys: flags.keys }, dir);
    const t = await target(flags);
    const ok = await fetch(`${t.keys}/healthz`, { signal: AbortSignal.timeout(3000) }).then(
      () => true,
      () => false,
    );
    return ok ? { keys: t.keys, authorization: t.authorization } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `latchkey shred --complete`: retires the key-encryption key generation that shredded keys were
 * ever wrapped under (docs/key-management.md "Completing a shred"): every live key re-wrapped
 * under a new generation, the old one destroyed. Online through the running key service when it
 * answers, else (or with --offline) on the files of an internal key manager. With a master key
 * from LATCHKEY_MASTER_KEY, the new one comes from LATCHKEY_NEW_MASTER_KEY. Prints
 * `shred complete: key generation G retired, N keys re-wrapped`, or
 * `shred complete: nothing to retire (key generation G is current)`.
 */
async function shredComplete(flags: ShredFlags, out: Out, env: Env): Promise<number> {
  const dir = dataDir(flags.data);
  const supplied = env.LATCHKEY_NEW_MASTER_KEY;
  const next =
    supplied !== undefined && supplied.trim() !== ''
      ? decodeSecretText(supplied, 'LATCHKEY_NEW_MASTER_KEY', { exactBytes: 32 })
      : undefined;
  const online = flags.offline === true ? undefined : await onlineTarget(flags, dir);
  let done: ShredCompleteResponse;
  try {
    if (online) {
      done = ShredCompleteResponse.parse(
        await call(
          online.keys,
          ADMIN_PATHS.shredComplete,
          online.authorization,
          next === undefined ? {} : { newMasterKey: toBase64Url(next) },
        ),
      );
    } else {
      done = await completeShredsOffline({
        dataDir: dir,
        env,
        ...(next === undefined ? {} : { newMasterKey: next }),
      });
    }
  } finally {
    next?.fill(0);
  }
  if (next !== undefined && done.retired.length > 0) {
    out('master-key: set LATCHKEY_MASTER_KEY to the value of LATCHKEY_NEW_MASTER_KEY from now on');
  }
  out(formatShredCompletion(done));
  return EXIT.ok;
}
