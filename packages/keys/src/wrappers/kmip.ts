/**
 * The KMIP adapter: the KEK is an AES-256 symmetric key in an enterprise key manager that
 * speaks KMIP 1.4 over mutual TLS (kmip/client.ts). It is created there once (Create with a
 * Name, Sensitive and not Extractable, usage Encrypt|Decrypt), found again by that Name with
 * Locate, Activated, and never fetched: the client has no Get. Each content key is encrypted
 * and decrypted by the server (KMIP 1.2+ Encrypt/Decrypt) with AES-GCM, a 96-bit IV chosen
 * here, a 128-bit tag, and the contact id and epoch as additional authenticated data, so a
 * wrapped key moved to another contact or epoch fails to unwrap (docs/key-management.md "KMIP").
 * The wrapped keys themselves live in the local wrapped key store (stores/key-store.ts).
 *
 * Wrapped form: `0x01 || IV (12) || ciphertext (32) || tag (16)`, 61 bytes.
 * AAD: `'latchkey.v1.kmip-wrap' || u32(len) || UTF-8(contactId) || u32(epoch)` (big-endian).
 *
 * Key generations (completing a shred): generation 1 is the key named `keyName`, a later
 * generation G a new key named `keyName.gG`, created the same way; a retired generation's key is
 * revoked (Cessation of Operation) and destroyed on the server.
 */
import { AuthenticationError } from '@latchkey/crypto/aead';
import { concatBytes, utf8Encode } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';
import type { KeyManagerHealth } from '../key-manager.ts';
import type { KekGenerations, KeyWrapper, WrapRequest } from '../key-wrapper.ts';
import {
  KmipClient,
  KmipResultError,
  type KmipAttribute,
  type KmipClientOptions,
} from '../kmip/client.ts';
import { RESULT_REASON, STATE_NAMES, USAGE_MASK } from '../kmip/tags.ts';
import { openKeyManager } from '../open-key-manager.ts';
import type { WrappedKeyManager } from '../stores/key-store.ts';

const FORMAT = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const WRAPPED_BYTES = 1 + IV_BYTES + KEY_BYTES + TAG_BYTES;
const AAD_DOMAIN = 'latchkey.v1.kmip-wrap';
const STATE_ACTIVE = 2;
const STATE_PRE_ACTIVE = 1;

export interface KmipWrapperOptions extends KmipClientOptions {
  /** Name attribute of the KEK (default `latchkey-kek`). */
  keyName?: string;
  /**
   * Create (and activate) the KEK when no key has `keyName` (default false: provisioning
   * creates it once; two processes creating at the same moment would make two keys).
   */
  createKey?: boolean;
  /**
   * Send the KMIP 1.4 `Extractable = false` attribute at creation (default true). Servers
   * that predate it refuse the Create (PyKMIP 0.10 does); `Sensitive = true` is always sent.
   */
  extractableAttribute?: boolean;
}

/** What the server says about the KEK (for audits and tests). */
export interface KmipKeyAttributes {
  uniqueIdentifier: string;
  state: string;
  cryptographicAlgorithm: number | undefined;
  cryptographicLength: number | undefined;
  usageMask: number | undefined;
  /** undefined when the server does not report the attribute. */
  sensitive: boolean | undefined;
  extractable: boolean | undefined;
}

export interface KmipKeyWrapper extends KeyWrapper {
  /** Unique Identifier of the KEK in the KMIP server. */
  readonly keyId: string;
  keyAttributes(): Promise<KmipKeyAttributes>;
}

function aad(req: WrapRequest): Uint8Array {
  const id = utf8Encode(req.contactId);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, id.length);
  const epoch = new Uint8Array(4);
  new DataView(epoch.buffer).setUint32(0, req.epoch);
  return concatBytes(utf8Encode(AAD_DOMAIN), len, id, epoch);
}

function kmipError(message: string, err: unknown): LatchkeyError {
  if (err instanceof KmipResultError) return err;
  if (LatchkeyError.is(err)) return err;
  return new LatchkeyError('KEY_UNAVAILABLE', message, {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

function attributeNumber(attrs: KmipAttribute[], name: string): number | undefined {
  const v = attrs.find((a) => a.name === name)?.value;
  return v !== undefined && (v.type === 'Enumeration' || v.type === 'Integer')
    ? v.value
    : undefined;
}

function attributeBoolean(attrs: KmipAttribute[], name: string): boolean | undefined {
  const v = attrs.find((a) => a.name === name)?.value;
  return v?.type === 'Boolean' ? v.value : undefined;
}

async function keyState(client: KmipClient, id: string): Promise<number | undefined> {
  return attributeNumber(await client.getAttributes(id, ['State']), 'State');
}

/**
 * A KeyWrapper whose KEK lives in a KMIP server. Connects, finds the KEK by name (or creates
 * and activates it with `createKey`) and checks that it is Active.
 * @throws LatchkeyError KEY_UNAVAILABLE when the server cannot be reached or refuses (TLS,
 *   certificates, permissions), the key is missing (and `createKey` is not set), ambiguous, or
 *   not Active.
 */
export async function createKmipWrapper(opts: KmipWrapperOptions): Promise<KmipKeyWrapper> {
  const {
    keyName = 'latchkey-kek',
    createKey = false,
    extractableAttribute = true,
    ...clientOpts
  } = opts;
  const client = new KmipClient(clientOpts);
  let keyId: string;
  try {
    const found = await client.locate(keyName);
    if (found.length > 1)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'more than one KMIP key has this name', {
        detail: keyName,
      });
    if (found[0] !== undefined) {
      keyId = found[0];
    } else if (createKey) {
      keyId = await client.create({
        name: keyName,
        usageMask: USAGE_MASK.Encrypt | USAGE_MASK.Decrypt,
        sensitive: true,
        ...(extractableAttribute ? { extractable: false } : {}),
      });
    } else {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'KMIP key not found', { detail: keyName });
    }
    let state = await keyState(client, keyId);
    // A key left Pre-Active (a crash between Create and Activate) is ours to activate only
    // when we are the one provisioning it.
    if (state === STATE_PRE_ACTIVE && createKey) {
      await client.activate(keyId);
      state = await keyState(client, keyId);
    }
    if (state !== STATE_ACTIVE) {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'KMIP key is not active', {
        detail: `${keyName} (${keyId}) is ${state === undefined ? 'in an unknown state' : (STATE_NAMES[state] ?? String(state))}`,
      });
    }
  } catch (err) {
    client.close();
    throw kmipError('cannot open the KMIP key', err);
  }

  let closed = false;
  const live = (): void => {
    if (closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'KMIP wrapper is closed');
  };

  return {
    backend: 'kmip',
    checkAtOpen: true,
    keyId,
    async wrap(contentKey, req) {
      live();
      if (contentKey.length !== KEY_BYTES) throw new RangeError('content key must be 32 bytes');
      const iv = randomBytes(IV_BYTES);
      try {
        const { ciphertext, tag } = await client.encryptGcm(keyId, contentKey, {
          iv,
          aad: aad(req),
          tagLength: TAG_BYTES,
        });
        return concatBytes(new Uint8Array([FORMAT]), iv, ciphertext, tag);
      } catch (err) {
        throw kmipError('the KMIP server could not wrap the key', err);
      }
    },
    async unwrap(wrapped, req) {
      live();
      if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== FORMAT)
        throw new AuthenticationError();
      const iv = wrapped.slice(1, 1 + IV_BYTES);
      const ciphertext = wrapped.slice(1 + IV_BYTES, 1 + IV_BYTES + KEY_BYTES);
      const tag = wrapped.slice(1 + IV_BYTES + KEY_BYTES);
      let out: Uint8Array;
      try {
        out = await client.decryptGcm(keyId, ciphertext, { iv, aad: aad(req), tag });
      } catch (err) {
        // A tag mismatch is a Cryptographic Failure in KMIP 1.4; PyKMIP reports it as General
        // Failure. Both mean the data did not authenticate under this key and context; every
        // other reason (not found, permission, state) and every transport error is the backend.
        if (
          err instanceof KmipResultError &&
          (err.reason === RESULT_REASON.CryptographicFailure ||
            err.reason === RESULT_REASON.GeneralFailure)
        ) {
          throw new AuthenticationError();
        }
        throw kmipError('the KMIP server could not unwrap the key', err);
      }
      if (out.length !== KEY_BYTES) {
        out.fill(0);
        throw new AuthenticationError();
      }
      return out;
    },
    async health(): Promise<KeyManagerHealth> {
      if (closed) return { status: 'degraded', backend: 'kmip', detail: 'closed' };
      try {
        const state = await keyState(client, keyId);
        if (state === STATE_ACTIVE) return { status: 'ok', backend: 'kmip' };
        return {
          status: 'degraded',
          backend: 'kmip',
          detail: `KEK state ${state === undefined ? 'unknown' : (STATE_NAMES[state] ?? String(state))}`,
        };
      } catch (err) {
        return {
          status: 'degraded',
          backend: 'kmip',
          detail: err instanceof Error ? err.message : String(err),
        };
      }
    },
    async keyAttributes() {
      live();
      try {
        const attrs = await client.getAttributes(keyId, [
          'State',
          'Cryptographic Algorithm',
          'Cryptographic Length',
          'Cryptographic Usage Mask',
          'Sensitive',
        ]);
        // Asked for separately: a server that predates KMIP 1.4 may refuse the name.
        const extractable = await client.getAttributes(keyId, ['Extractable']).catch(() => []);
        const state = attributeNumber(attrs, 'State');
        return {
          uniqueIdentifier: keyId,
          state: state === undefined ? 'unknown' : (STATE_NAMES[state] ?? String(state)),
          cryptographicAlgorithm: attributeNumber(attrs, 'Cryptographic Algorithm'),
          cryptographicLength: attributeNumber(attrs, 'Cryptographic Length'),
          usageMask: attributeNumber(attrs, 'Cryptographic Usage Mask'),
          sensitive: attributeBoolean(attrs, 'Sensitive'),
          extractable: attributeBoolean(extractable, 'Extractable'),
        };
      } catch (err) {
        throw kmipError('cannot read the KMIP key attributes', err);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      client.close();
    },
  };
}

/** Name of a KEK generation: `keyName` for the first, `keyName.gG` after. */
export function kmipGenerationName(keyName: string, generation: number): string {
  return generation <= 1 ? keyName : `${keyName}.g${generation}`;
}

/**
 * The generations of a KMIP KEK: each a key of its own on the server (see the header).
 * `createKey` of `opts` provisions generation 1 only; later ones are made by completing a shred.
 */
export function createKmipGenerations(opts: KmipWrapperOptions): KekGenerations {
  const { keyName = 'latchkey-kek', ...rest } = opts;
  /** Names actually opened, so a KEK found under the configured name is the one destroyed. */
  const opened = new Map<number, string>();
  return {
    wrapper: async (generation, { create }) => {
      const name = kmipGenerationName(keyName, generation);
      try {
        const w = await createKmipWrapper({
          ...rest,
          keyName: name,
          createKey: create || (generation <= 1 && opts.createKey === true),
        });
        opened.set(generation, name);
        return w;
      } catch (err) {
        // A KEK rotated by hand (rewrap to a new name, now configured): the configured name.
        if (create || name === keyName || !LatchkeyError.is(err, 'KEY_UNAVAILABLE')) throw err;
        const w = await createKmipWrapper({ ...rest, keyName, createKey: false });
        opened.set(generation, keyName);
        return w;
      }
    },
    destroy: (generation) =>
      destroyKmipKey(rest, opened.get(generation) ?? kmipGenerationName(keyName, generation)),
  };
}

/**
 * Revokes and destroys every key named `name` on the KMIP server. None: no-op. A key already
 * revoked (a run interrupted between the two) is destroyed.
 * @throws LatchkeyError KEY_UNAVAILABLE when the server refuses or cannot be reached.
 */
export async function destroyKmipKey(opts: KmipClientOptions, name: string): Promise<void> {
  const client = new KmipClient(opts);
  try {
    for (const id of await client.locate(name)) {
      const state = await keyState(client, id);
      // 5 Destroyed, 6 Destroyed Compromised: gone already (a server that still lists them).
      if (state === 5 || state === 6) continue;
      // Only Pre-Active and Deactivated objects may be destroyed: revoke an Active one first.
      if (state === STATE_ACTIVE) await client.revoke(id);
      await client.destroy(id);
    }
  } catch (err) {
    throw kmipError('cannot destroy the KMIP key', err);
  } finally {
    client.close();
  }
}

/**
 * The KMIP server as a KeyManager: a local wrapped key store at `path` whose KEK stays in the
 * KMIP server (the store's current generation of it, see createKmipGenerations).
 * @throws LatchkeyError KEY_UNAVAILABLE as createKmipWrapper, or when the store was made with
 *   another KEK.
 */
export async function openKmipKeyManager(
  opts: KmipWrapperOptions & { path: string; now?: () => number },
): Promise<WrappedKeyManager> {
  const { path, now, ...rest } = opts;
  return openKeyManager({
    store: { path },
    wrapper: createKmipGenerations(rest),
    mismatchMessage: 'the KMIP key does not match this key database',
    ...(now === undefined ? {} : { now }),
  });
}
