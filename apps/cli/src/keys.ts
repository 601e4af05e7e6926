/**
 * Key-management subcommands of `latchkey` (README "Command line"; docs/key-management.md):
 * `keys audit` (print and verify the key access log), `keys rewrap` (master-key rotation of the
 * internal key manager, online through the running key service or offline), `shred` (crypto-
 * shredding: key service first, then relay; `--complete` retires the key generation the shredded
 * keys were wrapped under), and the `start` flags that choose the key manager, rotation and the
 * shred-completion schedule. Secrets (KMS HMAC secret, HSM PIN, new master key) come from the environment or
 * files only, never from flags.
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import {
  completeShredsOffline,
  keyServicePaths,
  rotateMasterKeyOffline,
  type KeyManagerChoice,
} from '@latchkey/keyd';
import {
  KeyAccessLog,
  createPrivateFile,
  decodeSecretText,
  formatShredCompletion,
  readPrivateFile,
  resolveMasterKey,
  type AccessLogHead,
} from '@latchkey/keys';
import {
  ADMIN_PATHS,
  LatchkeyError,
  RewrapResponse,
  ShredCompleteResponse,
  ShredResponse,
} from '@latchkey/protocol';
import { call, moderateOrder, target, type AdminFlags } from './admin.ts';
import { dataDir, endpoints } from './config.ts';
import { SYSLOG_START_OPTIONS, syslogSettings, type SyslogStartFlags } from './syslog-settings.ts';
import { verifyStreamFile, type VerifyStreamFlags } from './verify-stream.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;
type Env = Readonly<Record<string, string | undefined>>;

const str = { type: 'string' } as const;

/** parseArgs options that `latchkey start` takes for the key service. */
export const KEY_START_OPTIONS = {
  'key-manager': str,
  'kms-url': str,
  'kms-model': str,
  'kms-key-id': str,
  'kms-client-id': str,
  'kms-secret-file': str,
  'kms-timeout': str,
  'kms-cache-ttl': str,
  'kms-generate': { type: 'boolean' },
  'pkcs11-module': str,
  'pkcs11-token': str,
  'pkcs11-key-label': str,
  'pkcs11-pin-file': str,
  'pkcs11-create-key': { type: 'boolean' },
  'kmip-host': str,
  'kmip-port': str,
  'kmip-ca': str,
  'kmip-client-cert': str,
  'kmip-client-key': str,
  'kmip-servername': str,
  'kmip-key-name': str,
  'kmip-timeout': str,
  'kmip-create-key': { type: 'boolean' },
  'kmip-no-extractable-attribute': { type: 'boolean' },
  'rotate-after': str,
  'rotate-after-messages': str,
  'shred-complete-every': str,
  ...SYSLOG_START_OPTIONS,
} as const;

export interface KeyStartFlags extends SyslogStartFlags {
  'key-manager'?: string | undefined;
  'kms-url'?: string | undefined;
  'kms-model'?: string | undefined;
  'kms-key-id'?: string | undefined;
  'kms-client-id'?: string | undefined;
  'kms-secret-file'?: string | undefined;
  'kms-timeout'?: string | undefined;
  'kms-cache-ttl'?: string | undefined;
  'kms-generate'?: boolean | undefined;
  'pkcs11-module'?: string | undefined;
  'pkcs11-token'?: string | undefined;
  'pkcs11-key-label'?: string | undefined;
  'pkcs11-pin-file'?: string | undefined;
  'pkcs11-create-key'?: boolean | undefined;
  'kmip-host'?: string | undefined;
  'kmip-port'?: string | undefined;
  /** Files (PEM): the server's CA, the client certificate and the client key. */
  'kmip-ca'?: string | undefined;
  'kmip-client-cert'?: string | undefined;
  'kmip-client-key'?: string | undefined;
  'kmip-servername'?: string | undefined;
  'kmip-key-name'?: string | undefined;
  'kmip-timeout'?: string | undefined;
  'kmip-create-key'?: boolean | undefined;
  'kmip-no-extractable-attribute'?: boolean | undefined;
  'rotate-after'?: string | undefined;
  'rotate-after-messages'?: string | undefined;
  'shred-complete-every'?: string | undefined;
}

/** A duration: 500ms, 90, 90s, 30m, 1h, 1d (bare numbers are seconds) in ms. */
export function parseDurationMs(text: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} must look like 500ms, 90s, 30m, 1h or 1d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    (m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return Number(m[1]) * unit;
}

/**
 * A shared secret from the environment variable `name`, else from `file`.
 * @throws UsageError when neither is set, the file cannot be read, or the secret is too short
 *   or not base64url/hex (a setting to fix, exit 2).
 */
function secretFrom(env: Env, name: string, file: string | undefined, what: string): Uint8Array {
  const text = env[name];
  const decode = (value: string, from: string): Uint8Array => {
    try {
      return decodeSecretText(value, from, { minBytes: 32 });
    } catch (err) {
      throw new UsageError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  if (text !== undefined && text.trim() !== '') return decode(text, name);
  if (file !== undefined) {
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    return decode(content, file);
  }
  throw new UsageError(`${what}: set ${name} or pass the file flag`);
}

function pinFrom(env: Env, file: string | undefined): string {
  const text = env.LATCHKEY_PKCS11_PIN;
  if (text !== undefined && text !== '') return text;
  if (file !== undefined) return readFileSync(file, 'utf8').trim();
  throw new UsageError('pkcs11: set LATCHKEY_PKCS11_PIN or pass --pkcs11-pin-file');
}

/** A PEM file named by a flag or an environment variable. */
function pemFile(file: string | undefined, what: string): string {
  if (file === undefined) throw new UsageError(`--key-manager kmip needs ${what}`);
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

/** The KMIP client's private key: LATCHKEY_KMIP_CLIENT_KEY (PEM text), else a file. */
function kmipClientKey(env: Env, file: string | undefined): string {
  const text = env.LATCHKEY_KMIP_CLIENT_KEY;
  if (text !== undefined && text.trim() !== '') return text;
  return pemFile(
    file,
    '--kmip-client-key FILE (or LATCHKEY_KMIP_CLIENT_KEY, LATCHKEY_KMIP_CLIENT_KEY_FILE)',
  );
}

/**
 * The key service settings of `latchkey start` from flags, then environment.
 * @throws UsageError for a missing or malformed setting.
 */
export function keyServiceSettings(
  flags: KeyStartFlags,
  env: Env = process.env,
): {
  keyManager: KeyManagerChoice;
  rotateAfterMs?: number;
  rotateAfterMessages?: number;
  shredCompleteEveryMs?: number;
  syslog?: { url: string; ca: string; servername?: string };
} {
  const kind = flags['key-manager'] ?? env.LATCHKEY_KEY_MANAGER ?? 'internal';
  let keyManager: KeyManagerChoice;
  switch (kind) {
    case 'internal':
      keyManager = { kind: 'internal' };
      break;
    case 'http': {
      const url = flags['kms-url'] ?? env.LATCHKEY_KMS_URL;
      if (!url || !/^https?:\/\//.test(url))
        throw new UsageError(
          '--key-manager http needs --kms-url (or LATCHKEY_KMS_URL) http(s)://...',
        );
      const model = flags['kms-model'] ?? env.LATCHKEY_KMS_MODEL ?? 'wrap';
      if (model !== 'wrap' && model !== 'store')
        throw new UsageError('--kms-model must be wrap or store');
      if (
        model === 'store' &&
        (flags['kms-generate'] === true || env.LATCHKEY_KMS_GENERATE === '1')
      )
        throw new UsageError(
          '--kms-generate needs the wrap model (the store model makes its own keys)',
        );
      const timeout = flags['kms-timeout'] ?? env.LATCHKEY_KMS_TIMEOUT;
      const cache = flags['kms-cache-ttl'] ?? env.LATCHKEY_KMS_CACHE_TTL;
      keyManager = {
        kind: 'http',
        url,
        model,
        keyId: flags['kms-key-id'] ?? env.LATCHKEY_KMS_KEY_ID ?? 'latchkey-kek',
        clientId: flags['kms-client-id'] ?? env.LATCHKEY_KMS_CLIENT_ID ?? 'latchkey',
        secret: secretFrom(
          env,
          'LATCHKEY_KMS_SECRET',
          flags['kms-secret-file'] ?? env.LATCHKEY_KMS_SECRET_FILE,
          'http key manager',
        ),
        ...(timeout === undefined ? {} : { timeoutMs: parseDurationMs(timeout, '--kms-timeout') }),
        ...(cache === undefined ? {} : { cacheTtlMs: parseDurationMs(cache, '--kms-cache-ttl') }),
        ...(flags['kms-generate'] === true || env.LATCHKEY_KMS_GENERATE === '1'
          ? { generate: true }
          : {}),
      };
      break;
    }
    case 'pkcs11': {
      const module = flags['pkcs11-module'] ?? env.LATCHKEY_PKCS11_MODULE;
      const tokenLabel = flags['pkcs11-token'] ?? env.LATCHKEY_PKCS11_TOKEN;
      if (!module || !tokenLabel)
        throw new UsageError(
          '--key-manager pkcs11 needs --pkcs11-module and --pkcs11-token (or LATCHKEY_PKCS11_MODULE/_TOKEN)',
        );
      const keyLabel = flags['pkcs11-key-label'] ?? env.LATCHKEY_PKCS11_KEY_LABEL;
      keyManager = {
        kind: 'pkcs11',
        module,
        tokenLabel,
        pin: pinFrom(env, flags['pkcs11-pin-file'] ?? env.LATCHKEY_PKCS11_PIN_FILE),
        ...(keyLabel === undefined ? {} : { keyLabel }),
        ...(flags['pkcs11-create-key'] === true ? { createKey: true } : {}),
      };
      break;
    }
    case 'kmip': {
      const host = flags['kmip-host'] ?? env.LATCHKEY_KMIP_HOST;
      if (!host)
        throw new UsageError('--key-manager kmip needs --kmip-host (or LATCHKEY_KMIP_HOST)');
      const port = flags['kmip-port'] ?? env.LATCHKEY_KMIP_PORT;
      if (
        port !== undefined &&
        (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
      ) {
        throw new UsageError('--kmip-port must be 1..65535');
      }
      const servername = flags['kmip-servername'] ?? env.LATCHKEY_KMIP_SERVERNAME;
      const keyName = flags['kmip-key-name'] ?? env.LATCHKEY_KMIP_KEY_NAME;
      const timeout = flags['kmip-timeout'] ?? env.LATCHKEY_KMIP_TIMEOUT;
      keyManager = {
        kind: 'kmip',
        host,
        ca: pemFile(
          flags['kmip-ca'] ?? env.LATCHKEY_KMIP_CA,
          '--kmip-ca FILE (or LATCHKEY_KMIP_CA)',
        ),
        cert: pemFile(
          flags['kmip-client-cert'] ?? env.LATCHKEY_KMIP_CLIENT_CERT,
          '--kmip-client-cert FILE (or LATCHKEY_KMIP_CLIENT_CERT)',
        ),
        key: kmipClientKey(env, flags['kmip-client-key'] ?? env.LATCHKEY_KMIP_CLIENT_KEY_FILE),
        ...(port === undefined ? {} : { port: Number(port) }),
        ...(servername === undefined ? {} : { servername }),
        ...(keyName === undefined ? {} : { keyName }),
        ...(timeout === undefined ? {} : { timeoutMs: parseDurationMs(timeout, '--kmip-timeout') }),
        ...(flags['kmip-create-key'] === true ? { createKey: true } : {}),
        ...(flags['kmip-no-extractable-attribute'] === true ||
        env.LATCHKEY_KMIP_EXTRACTABLE_ATTRIBUTE === 'false'
          ? { extractableAttribute: false }
          : {}),
      };
      break;
    }
    default:
      throw new UsageError('--key-manager must be internal, http, pkcs11 or kmip');
  }
  const after = flags['rotate-after'] ?? env.LATCHKEY_ROTATE_AFTER;
  const afterMessages = flags['rotate-after-messages'] ?? env.LATCHKEY_ROTATE_AFTER_MESSAGES;
  if (afterMessages !== undefined && !/^[1-9]\d{0,9}$/.test(afterMessages)) {
    throw new UsageError('--rotate-after-messages must be a positive integer');
  }
  const completeEvery = flags['shred-complete-every'] ?? env.LATCHKEY_SHRED_COMPLETE_EVERY;
  return {
    keyManager,
    ...(after === undefined ? {} : { rotateAfterMs: parseDurationMs(after, '--rotate-after') }),
    ...(afterMessages === undefined ? {} : { rotateAfterMessages: Number(afterMessages) }),
    ...(completeEvery === undefined
      ? {}
      : { shredCompleteEveryMs: parseDurationMs(completeEvery, '--shred-complete-every') }),
    ...syslogSettings(flags, env),
  };
}

// ---- keys audit ------------------------------------------------------------------------------

export interface AuditFlags extends VerifyStreamFlags {
  data?: string | undefined;
  json?: boolean | undefined;
  head?: string | undefined;
}

/**
 * `latchkey keys audit`: prints every record of the key access log and verifies the chain.
 * Exit 1 with `error: TAMPERED ...` when a record was changed, removed, inserted or reordered.
 */
export async function keysAudit(flags: AuditFlags, out: Out, err: Out): Promise<number> {
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
  if (!existsSync(paths.db) || !existsSync(paths.accessLogKey)) {
    throw new LatchkeyError('NOT_FOUND', `no key access log in ${paths.dir}`);
  }
  const key = readPrivateFile(paths.accessLogKey, 32);
  const log = new KeyAccessLog({ path: paths.db, key });
  key.fill(0);
  try {
    let after = 0;
    for (;;) {
      const page = log.list({ afterSeq: after, limit: 1000 });
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
    const verdict = log.verify(head === undefined ? {} : { head });
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
    log.close();
  }
}

// ---- keys rewrap -----------------------------------------------------------------------------

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

// ---- shred -----------------------------------------------------------------------------------

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
