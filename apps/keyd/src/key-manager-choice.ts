/**
 * Which key manager the key service uses (docs/key-management.md "adapters"): the internal one
 * (default; content keys wrapped under the master key in `keys/keys.db`), the enterprise's key
 * manager over the External Key Manager API (`http`: wrap model with the wrapped keys in
 * `keys/keys.db`, or the key-store model with nothing stored here), or an HSM over PKCS#11
 * (`pkcs11`: the KEK inside the token, wrapped keys in `keys/keys.db`), or a KMIP server
 * (`kmip`: the KEK in the server, which wraps each content key with AES-GCM; wrapped keys in
 * `keys/keys.db`). Secrets (HMAC secret, PIN, TLS client key) come in as values; the callers
 * read them from the environment or files only.
 *
 * With a key store URL (`postgres://...`), every wrap-model choice keeps its wrapped keys in
 * that PostgreSQL database instead of `keys/keys.db`, so several key services can share them
 * (docs/operations.md "Key store on PostgreSQL"); the KEK stays where the choice puts it.
 *
 * The HSM and KMIP choices open the store's current KEK generation (`kekGenerationsOf`), which
 * completing a shred replaces by a new key object (docs/key-management.md "Completing a shred").
 *
 * For `http`, every failure of the enterprise's key manager goes to `onFailure` (one log line
 * with its status and reason, `formatKmFailure`), and `checkKeyManagerAtStart` is the start-up
 * self-check: a key manager that refuses our signature (401) or our client (403) stops the
 * start with a message naming the cause; one that is down does not (the wrap model opens while
 * it is down) but is reported (docs/key-management.md "Diagnostics").
 */
import {
  createHttpWrapper,
  createInternalWrapper,
  createKmipGenerations,
  createPkcs11Generations,
  openHttpKeyManager,
  openHttpKeyStoreManager,
  openInternalKeyManager,
  openKmipKeyManager,
  openKeyManager,
  openPkcs11KeyManager,
  type KekGenerations,
  type KeyManager,
  type HttpKeyWrapper,
  type KeyWrapper,
  type KmClientOptions,
  type WrappedKeyManager,
  type KmFailure,
} from '@latchkey/keys';
import { LatchkeyError } from '@latchkey/protocol';

export type KeyManagerChoice =
  | { kind: 'internal' }
  | {
      kind: 'http';
      /** Base URL of the enterprise's key manager. */
      url: string;
      /** `wrap` (default): Latchkey stores wrapped keys; `store`: the enterprise keeps them. */
      model?: 'wrap' | 'store';
      /** The enterprise's KEK name (wrap model; default `latchkey-kek`). */
      keyId?: string;
      /** HMAC client id (default `latchkey`) and secret (at least 32 bytes). */
      clientId?: string;
      secret: Uint8Array;
      timeoutMs?: number;
      retries?: number;
      breakerThreshold?: number;
      breakerCooldownMs?: number;
      /** Cache of unwrapped keys in ms (default 0: none). */
      cacheTtlMs?: number;
      /**
       * Wrap model: new content keys come from the key manager's `generate` (made in its HSM,
       * data-key style) instead of being generated here and sent to `wrap`. Default false.
       */
      generate?: boolean;
      tls?: KmClientOptions['tls'];
    }
  | {
      kind: 'pkcs11';
      /** The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
      module: string;
      tokenLabel: string;
      pin: string;
      /** CKA_LABEL of the KEK (default `latchkey-kek`). */
      keyLabel?: string;
      /** Generate the KEK in the token when missing (provisioning; default false). */
      createKey?: boolean;
    }
  | {
      kind: 'kmip';
      /** KMIP server host name or IP, and port (default 5696). */
      host: string;
      port?: number;
      /** PEM of the CA that issued the server certificate (the only trust anchor). */
      ca: string | Uint8Array;
      /** PEM client certificate and private key (mutual TLS; the key is a secret). */
      cert: string | Uint8Array;
      key: string | Uint8Array;
      /** Name the server certificate must carry (default `host`). */
      servername?: string;
      /** Name attribute of the KEK (default `latchkey-kek`). */
      keyName?: string;
      /** Create and activate the KEK when missing (provisioning; default false). */
      createKey?: boolean;
      /** Send KMIP 1.4 `Extractable = false` at creation (default true; PyKMIP 0.10 needs false). */
      extractableAttribute?: boolean;
      /** Per request (default 10 s). */
      timeoutMs?: number;
    };

/** What the key service is told about its key manager at run time. */
export interface KeyManagerHooks {
  /** Each failure of an external key manager (http): for the log. */
  onFailure?: (failure: KmFailure) => void;
}

/** One log line of a key-manager failure: operation, status, code, reason; never a secret. */
export function formatKmFailure(f: KmFailure): string {
  return `key manager: ${f.op} failed: ${f.reason}${f.retrying ? ' (retrying)' : ''}`;
}

/**
 * The start-up self-check of an external key manager (http): one signed `GET /v1/health`.
 * @throws LatchkeyError KEY_UNAVAILABLE naming the cause when the key manager refuses our
 *   signature or timestamp (401) or our client (403). A key manager that is down or answers
 *   garbage only gives a warning through `warn`: the key service starts and its calls fail with
 *   KEY_UNAVAILABLE until it is back.
 */
export async function checkKeyManagerAtStart(
  keyManager: KeyManager,
  choice: KeyManagerChoice,
  warn: (line: string) => void,
): Promise<void> {
  if (choice.kind !== 'http') return;
  const since = Date.now();
  const h = await keyManager.health();
  if (h.status === 'ok') {
    if (choice.model !== 'store') await checkKekAtStart(keyManager, choice, warn);
    return;
  }
  const last = h.lastError !== undefined && h.lastError.at >= since ? h.lastError : undefined;
  const where = `the external key manager at ${choice.url}`;
  const client = choice.clientId ?? 'latchkey';
  if (last?.status === 401) {
    const fix =
      last.code === 'AUTH_EXPIRED'
        ? 'check that the clocks of this host and the key manager agree (within 5 minutes)'
        : `check the client id (--kms-client-id, LATCHKEY_KMS_CLIENT_ID; now ${client}) and the shared secret (LATCHKEY_KMS_SECRET or --kms-secret-file) registered there`;
    throw new LatchkeyError(
      'KEY_UNAVAILABLE',
      `${where} refused our signature at start (${last.reason}); ${fix}`,
    );
  }
  if (last?.status === 403) {
    throw new LatchkeyError(
      'KEY_UNAVAILABLE',
      `${where} refused access to client ${client} at start (${last.reason}); grant this client access there`,
    );
  }
  warn(
    `key manager: ${where} is not usable at start (${last?.reason ?? h.detail ?? h.status}); starting anyway, key requests fail with KEY_UNAVAILABLE until it answers`,
  );
}

/**
 * The wrap model's KEK at start: `GET /v1/keys/{keyId}` must name an enabled key offering wrap
 * and unwrap (and generate with `--kms-generate`).
 * @throws LatchkeyError KEY_UNAVAILABLE naming what is wrong.
 */
async function checkKekAtStart(
  keyManager: KeyManager,
  choice: Extract<KeyManagerChoice, { kind: 'http' }>,
  warn: (line: string) => void,
): Promise<void> {
  const wrapper = (keyManager as Partial<WrappedKeyManager>).currentWrapper as
    Partial<HttpKeyWrapper> | undefined;
  if (wrapper?.metadata === undefined) return;
  const keyId = choice.keyId ?? 'latchkey-kek';
  const where = `the external key manager at ${choice.url}`;
  let m;
  try {
    m = await wrapper.metadata();
  } catch (err) {
    if (LatchkeyError.is(err, 'NOT_FOUND'))
      throw new LatchkeyError(
        'KEY_UNAVAILABLE',
        `${where} has no key ${keyId} (GET /v1/keys/${keyId}: 404); create it there or set --kms-key-id (LATCHKEY_KMS_KEY_ID)`,
      );
    warn(
      `key manager: ${where} did not describe key ${keyId} at start (${LatchkeyError.is(err) ? (err.detail ?? err.message) : String(err)}); starting anyway`,
    );
    return;
  }
  const want = ['wrap', 'unwrap', ...(choice.generate === true ? ['generate'] : [])];
  const missing = want.filter((op) => !m.operations.includes(op));
  if (m.state !== 'enabled' || missing.length > 0) {
    const what = m.state !== 'enabled' ? `is ${m.state}` : `does not offer ${missing.join(', ')}`;
    throw new LatchkeyError(
      'KEY_UNAVAILABLE',
      `${where}: key ${keyId} ${what} (GET /v1/keys/${keyId})${missing.includes('generate') ? '; drop --kms-generate or enable generate there' : ''}`,
    );
  }
}

/** Schemes a key store URL may use. */
const KEY_STORE_SCHEMES = ['postgres:', 'postgresql:'];

/**
 * Opens the chosen key manager over the key database `dbPath`, or over the PostgreSQL
 * database `keyStoreUrl` when given (wrap models only).
 * @throws LatchkeyError KEY_UNAVAILABLE when the backend or the file is unusable or the key does
 *   not match the stored keys; RangeError/TypeError for malformed settings (a key store URL
 *   that is not postgres://, or one with the http key-store model, which stores nothing here).
 */
export async function openChosenKeyManager(
  choice: KeyManagerChoice,
  dbPath: string,
  masterKey: Uint8Array,
  keyStoreUrl?: string,
  hooks: KeyManagerHooks = {},
): Promise<KeyManager> {
  if (keyStoreUrl !== undefined) return openOnPostgres(choice, masterKey, keyStoreUrl, hooks);
  switch (choice.kind) {
    case 'internal':
      return openInternalKeyManager({ path: dbPath, masterKey });
    case 'http': {
      const opts = httpOptions(choice, hooks);
      if (choice.model === 'store') return openHttpKeyStoreManager(opts);
      return openHttpKeyManager({
        ...opts,
        keyId: choice.keyId ?? 'latchkey-kek',
        path: dbPath,
        ...(choice.generate === true ? { useGenerate: true } : {}),
      });
    }
    case 'pkcs11':
      return openPkcs11KeyManager({ ...pkcs11Options(choice), path: dbPath });
    case 'kmip':
      return openKmipKeyManager({ ...kmipOptions(choice), path: dbPath });
  }
}

async function openOnPostgres(
  choice: KeyManagerChoice,
  masterKey: Uint8Array,
  url: string,
  hooks: KeyManagerHooks,
): Promise<KeyManager> {
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    throw new TypeError('key store URL must be postgres://...');
  }
  if (!KEY_STORE_SCHEMES.includes(scheme))
    throw new TypeError('key store URL must be postgres://...');
  let wrapper: KeyWrapper | KekGenerations;
  let mismatchMessage: string;
  switch (choice.kind) {
    case 'internal':
      wrapper = createInternalWrapper(masterKey);
      mismatchMessage = 'the master key does not match this key database';
      break;
    case 'http':
      if (choice.model === 'store')
        throw new RangeError(
          'a key store URL needs the wrap model (the store model keeps no keys here)',
        );
      wrapper = createHttpWrapper({
        ...httpOptions(choice, hooks),
        keyId: choice.keyId ?? 'latchkey-kek',
        ...(choice.generate === true ? { useGenerate: true } : {}),
      });
      mismatchMessage = 'the key-encryption key does not match this key database';
      break;
    case 'pkcs11':
      wrapper = createPkcs11Generations(pkcs11Options(choice));
      mismatchMessage = 'the HSM key does not match this key database';
      break;
    case 'kmip':
      wrapper = createKmipGenerations(kmipOptions(choice));
      mismatchMessage = 'the KMIP key does not match this key database';
      break;
  }
  return openKeyManager({ store: { url }, wrapper, mismatchMessage });
}

/**
 * The KEK generations of an HSM or KMIP choice, for completing shreds; undefined for the others
 * (internal: the master key, handled by the key service; http: the enterprise's own versions).
 */
export function kekGenerationsOf(choice: KeyManagerChoice): KekGenerations | undefined {
  switch (choice.kind) {
    case 'pkcs11':
      return createPkcs11Generations(pkcs11Options(choice));
    case 'kmip':
      return createKmipGenerations(kmipOptions(choice));
    case 'internal':
    case 'http':
      return undefined;
  }
}

function httpOptions(
  choice: Extract<KeyManagerChoice, { kind: 'http' }>,
  hooks: KeyManagerHooks,
): KmClientOptions & { cacheTtlMs?: number } {
  return {
    ...(hooks.onFailure === undefined ? {} : { onFailure: hooks.onFailure }),
    url: choice.url,
    auth: { type: 'hmac', clientId: choice.clientId ?? 'latchkey', secret: choice.secret },
    ...(choice.timeoutMs === undefined ? {} : { timeoutMs: choice.timeoutMs }),
    ...(choice.retries === undefined ? {} : { retries: choice.retries }),
    ...(choice.breakerThreshold === undefined ? {} : { breakerThreshold: choice.breakerThreshold }),
    ...(choice.breakerCooldownMs === undefined
      ? {}
      : { breakerCooldownMs: choice.breakerCooldownMs }),
    ...(choice.tls === undefined ? {} : { tls: choice.tls }),
    ...(choice.cacheTtlMs === undefined ? {} : { cacheTtlMs: choice.cacheTtlMs }),
  };
}

function pkcs11Options(choice: Extract<KeyManagerChoice, { kind: 'pkcs11' }>) {
  return {
    library: choice.module,
    tokenLabel: choice.tokenLabel,
    pin: choice.pin,
    ...(choice.keyLabel === undefined ? {} : { keyLabel: choice.keyLabel }),
    ...(choice.createKey === undefined ? {} : { createKey: choice.createKey }),
  };
}

function kmipOptions(choice: Extract<KeyManagerChoice, { kind: 'kmip' }>) {
  return {
    host: choice.host,
    ca: choice.ca,
    cert: choice.cert,
    key: choice.key,
    ...(choice.port === undefined ? {} : { port: choice.port }),
    ...(choice.servername === undefined ? {} : { servername: choice.servername }),
    ...(choice.keyName === undefined ? {} : { keyName: choice.keyName }),
    ...(choice.createKey === undefined ? {} : { createKey: choice.createKey }),
    ...(choice.extractableAttribute === undefined
      ? {}
      : { extractableAttribute: choice.extractableAttribute }),
    ...(choice.timeoutMs === undefined ? {} : { timeoutMs: choice.timeoutMs }),
  };
}
