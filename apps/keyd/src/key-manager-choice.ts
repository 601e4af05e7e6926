/**
 * Which key manager the key service uses (docs/key-management.md "adapters"): the internal one
 * (default; content keys wrapped under the master key in `keys/keys.db`), the enterprise's key
 * manager over the External Key Manager API (`http`: wrap model with the wrapped keys in
 * `keys/keys.db`, or the key-store model with nothing stored here), or an HSM over PKCS#11
 * (`pkcs11`: the KEK inside the token, wrapped keys in `keys/keys.db`). Secrets (HMAC secret,
 * PIN) come in as values; the callers read them from the environment or files only.
 */
import {
  openHttpKeyManager,
  openHttpKeyStoreManager,
  openInternalKeyManager,
  openPkcs11KeyManager,
  type KeyManager,
  type KmClientOptions,
} from '@latchkey/keys';

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
    };

/**
 * Opens the chosen key manager over the key database `dbPath`.
 * @throws LatchkeyError KEY_UNAVAILABLE when the backend or the file is unusable or the key does
 *   not match the stored keys; RangeError/TypeError for malformed settings.
 */
export async function openChosenKeyManager(
  choice: KeyManagerChoice,
  dbPath: string,
  masterKey: Uint8Array,
): Promise<KeyManager> {
  switch (choice.kind) {
    case 'internal':
      return openInternalKeyManager({ path: dbPath, masterKey });
    case 'http': {
      const client: KmClientOptions = {
        url: choice.url,
        auth: { type: 'hmac', clientId: choice.clientId ?? 'latchkey', secret: choice.secret },
        ...(choice.timeoutMs === undefined ? {} : { timeoutMs: choice.timeoutMs }),
        ...(choice.retries === undefined ? {} : { retries: choice.retries }),
        ...(choice.breakerThreshold === undefined ? {} : { breakerThreshold: choice.breakerThreshold }),
        ...(choice.breakerCooldownMs === undefined ? {} : { breakerCooldownMs: choice.breakerCooldownMs }),
        ...(choice.tls === undefined ? {} : { tls: choice.tls }),
      };
      const cache = choice.cacheTtlMs === undefined ? {} : { cacheTtlMs: choice.cacheTtlMs };
      if (choice.model === 'store') return openHttpKeyStoreManager({ ...client, ...cache });
      return openHttpKeyManager({ ...client, ...cache, keyId: choice.keyId ?? 'latchkey-kek', path: dbPath });
    }
    case 'pkcs11':
      return openPkcs11KeyManager({
        library: choice.module,
        tokenLabel: choice.tokenLabel,
        pin: choice.pin,
        path: dbPath,
        ...(choice.keyLabel === undefined ? {} : { keyLabel: choice.keyLabel }),
        ...(choice.createKey === undefined ? {} : { createKey: choice.createKey }),
      });
  }
}
