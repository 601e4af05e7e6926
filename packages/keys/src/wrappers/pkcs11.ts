/**
 * The HSM adapter: the KEK is an AES-256 secret-key object in a PKCS#11 token (PKCS#11 v2.40
 * §2.14 AES, §2.12 GCM), generated in the token as sensitive and non-extractable, so it never
 * leaves the HSM. Each content key is encrypted and decrypted inside the HSM with CKM_AES_GCM
 * (96-bit random IV, 128-bit tag) and the contact id and epoch as additional authenticated data;
 * GCM rather than CKM_AES_KEY_WRAP_PAD (RFC 5649) because only GCM binds that context, so a
 * wrapped key moved to another contact or epoch fails to unwrap (docs/key-management.md "HSM").
 *
 * Wrapped form: `0x01 || IV (12) || ciphertext (32) || tag (16)`, 61 bytes.
 * AAD: `'latchkey.v1.hsm-wrap' || u32(len) || UTF-8(contactId) || u32(epoch)` (big-endian).
 *
 * Through pkcs11js (synchronous calls: one single-part operation at a time per session, which
 * Node's single thread guarantees). Tested against SoftHSM2.
 *
 * Key generations (completing a shred): generation 1 is the object labelled `keyLabel`, a later
 * generation G a new object labelled `keyLabel.gG`, generated in the token the same way; a
 * retired generation's object is destroyed with C_DestroyObject.
 */
import { AuthenticationError } from '@latchkey/crypto/aead';
import { concatBytes, utf8Encode } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';
import type { KeyManagerHealth } from '../key-manager.ts';
import type { KekGenerations, KeyWrapper, WrapRequest } from '../key-wrapper.ts';
import { openKeyManager } from '../open-key-manager.ts';
import type { WrappedKeyManager } from '../stores/key-store.ts';
import type * as Pkcs11Js from 'pkcs11js';
import { acquire, hsmError, openUserSession, release } from './pkcs11-module.ts';

const FORMAT = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const WRAPPED_BYTES = 1 + IV_BYTES + KEY_BYTES + TAG_BYTES;
const AAD_DOMAIN = 'latchkey.v1.hsm-wrap';

export interface Pkcs11WrapperOptions {
  /** The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
  library: string;
  /** Label of the token that holds the KEK. */
  tokenLabel: string;
  /** The user PIN of that token. */
  pin: string;
  /** CKA_LABEL of the KEK object (default `latchkey-kek`). */
  keyLabel?: string;
  /**
   * Generate the KEK in the token when no object has `keyLabel` (default false: provisioning
   * creates it once; two processes creating at the same moment would make two keys).
   */
  createKey?: boolean;
}

/** What the token says about the KEK object (for audits and tests). */
export interface Pkcs11KeyAttributes {
  sensitive: boolean;
  extractable: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
  valueLength: number;
  /** Whether reading CKA_VALUE succeeded (it must not). */
  valueReadable: boolean;
}

export interface Pkcs11KeyWrapper extends KeyWrapper {
  keyAttributes(): Pkcs11KeyAttributes;
}

function aad(req: WrapRequest): Buffer {
  const id = utf8Encode(req.contactId);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, id.length);
  const epoch = new Uint8Array(4);
  new DataView(epoch.buffer).setUint32(0, req.epoch);
  return Buffer.from(concatBytes(utf8Encode(AAD_DOMAIN), len, id, epoch));
}

/**
 * A KeyWrapper whose KEK is an AES-256 key object in a PKCS#11 token.
 * @throws LatchkeyError KEY_UNAVAILABLE when the module cannot be loaded, the token is not
 *   found, the PIN is wrong, or the key is missing (and `createKey` is not set) or ambiguous.
 */
export function createPkcs11Wrapper(opts: Pkcs11WrapperOptions): Pkcs11KeyWrapper {
  const keyLabel = opts.keyLabel ?? 'latchkey-kek';
  const m = acquire(opts.library);
  const { p11, mod } = m;
  let session: Buffer | undefined;
  let key: Buffer;
  try {
    session = openUserSession(m, opts);
    const s = session;
    mod.C_FindObjectsInit(s, [
      { type: p11.CKA_CLASS, value: p11.CKO_SECRET_KEY },
      { type: p11.CKA_KEY_TYPE, value: p11.CKK_AES },
      { type: p11.CKA_LABEL, value: keyLabel },
    ]);
    const found = mod.C_FindObjects(s, 2);
    mod.C_FindObjectsFinal(s);
    if (found.length > 1)
      throw new LatchkeyError('KEY_UNAVAILABLE', 'more than one PKCS#11 key has this label', {
        detail: keyLabel,
      });
    if (found[0] !== undefined) {
      key = found[0];
    } else if (opts.createKey === true) {
      key = mod.C_GenerateKey(s, { mechanism: p11.CKM_AES_KEY_GEN }, [
        { type: p11.CKA_CLASS, value: p11.CKO_SECRET_KEY },
        { type: p11.CKA_KEY_TYPE, value: p11.CKK_AES },
        { type: p11.CKA_VALUE_LEN, value: KEY_BYTES },
        { type: p11.CKA_LABEL, value: keyLabel },
        { type: p11.CKA_TOKEN, value: true },
        { type: p11.CKA_PRIVATE, value: true },
        { type: p11.CKA_SENSITIVE, value: true },
        { type: p11.CKA_EXTRACTABLE, value: false },
        { type: p11.CKA_ENCRYPT, value: true },
        { type: p11.CKA_DECRYPT, value: true },
        { type: p11.CKA_WRAP, value: false },
        { type: p11.CKA_UNWRAP, value: false },
        { type: p11.CKA_MODIFIABLE, value: false },
      ]);
    } else {
      throw new LatchkeyError('KEY_UNAVAILABLE', 'PKCS#11 key not found', { detail: keyLabel });
    }
  } catch (err) {
    if (session !== undefined) {
      try {
        mod.C_CloseSession(session);
      } catch {
        // Already gone; releasing the module below closes what is left.
      }
    }
    release(opts.library);
    throw hsmError('cannot open the PKCS#11 key', err);
  }
  const s = session;
  let closed = false;
  const live = (): void => {
    if (closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'PKCS#11 wrapper is closed');
  };
  const mechanism = (iv: Buffer, req: WrapRequest): Pkcs11Js.Mechanism => {
    const parameter: Pkcs11Js.AesGCM = {
      type: p11.CK_PARAMS_AES_GCM,
      iv,
      aad: aad(req),
      ivBits: IV_BYTES * 8,
      tagBits: TAG_BYTES * 8,
    };
    return { mechanism: p11.CKM_AES_GCM, parameter };
  };
  const bool = (v: Buffer | undefined): boolean => v !== undefined && v.length > 0 && v[0] !== 0;

  return {
    backend: 'pkcs11',
    checkAtOpen: true,
    async wrap(contentKey, req) {
      live();
      if (contentKey.length !== KEY_BYTES) throw new RangeError('content key must be 32 bytes');
      const iv = Buffer.from(randomBytes(IV_BYTES));
      const data = Buffer.from(contentKey);
      try {
        mod.C_EncryptInit(s, mechanism(iv, req), key);
        const out = mod.C_Encrypt(s, data, Buffer.alloc(KEY_BYTES + TAG_BYTES));
        if (out.length !== KEY_BYTES + TAG_BYTES)
          throw new LatchkeyError(
            'KEY_UNAVAILABLE',
            `unexpected GCM output of ${out.length} bytes`,
          );
        return concatBytes(new Uint8Array([FORMAT]), iv, out);
      } catch (err) {
        throw hsmError('the HSM could not wrap the key', err);
      } finally {
        data.fill(0);
      }
    },
    async unwrap(wrapped, req) {
      live();
      if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== FORMAT)
        throw new AuthenticationError();
      const iv = Buffer.from(wrapped.subarray(1, 1 + IV_BYTES));
      const body = Buffer.from(wrapped.subarray(1 + IV_BYTES));
      try {
        mod.C_DecryptInit(s, mechanism(iv, req), key);
      } catch (err) {
        throw hsmError('the HSM could not unwrap the key', err);
      }
      let out: Buffer;
      try {
        out = mod.C_Decrypt(s, body, Buffer.alloc(KEY_BYTES + TAG_BYTES));
      } catch (err) {
        // A tag mismatch (the wrapped key is not ours for this context) ends the operation with
        // CKR_ENCRYPTED_DATA_INVALID per PKCS#11 v2.40; SoftHSM2 reports CKR_GENERAL_ERROR.
        // Either way, if the session is still healthy it was the data, not the device.
        const dataError =
          err instanceof p11.Pkcs11Error &&
          [
            p11.CKR_ENCRYPTED_DATA_INVALID,
            p11.CKR_ENCRYPTED_DATA_LEN_RANGE,
            p11.CKR_FUNCTION_FAILED,
            p11.CKR_GENERAL_ERROR,
          ].includes(err.code);
        let healthy: boolean;
        try {
          mod.C_GetSessionInfo(s);
          healthy = true;
        } catch {
          healthy = false;
        }
        if (dataError && healthy) throw new AuthenticationError();
        throw hsmError('the HSM could not unwrap the key', err);
      }
      if (out.length !== KEY_BYTES) {
        out.fill(0);
        throw new AuthenticationError();
      }
      const result = Uint8Array.from(out);
      out.fill(0);
      return result;
    },
    async health(): Promise<KeyManagerHealth> {
      if (closed) return { status: 'degraded', backend: 'pkcs11', detail: 'closed' };
      try {
        mod.C_GetSessionInfo(s);
        return { status: 'ok', backend: 'pkcs11' };
      } catch (err) {
        return {
          status: 'degraded',
          backend: 'pkcs11',
          detail: err instanceof Error ? err.message : String(err),
        };
      }
    },
    keyAttributes() {
      live();
      const attrs = mod.C_GetAttributeValue(s, key, [
        { type: p11.CKA_SENSITIVE },
        { type: p11.CKA_EXTRACTABLE },
        { type: p11.CKA_ALWAYS_SENSITIVE },
        { type: p11.CKA_NEVER_EXTRACTABLE },
        { type: p11.CKA_VALUE_LEN },
      ]);
      const v = (t: number): Buffer | undefined => {
        const a = attrs.find((x) => x.type === t)?.value;
        return Buffer.isBuffer(a) ? a : undefined;
      };
      let valueReadable: boolean;
      try {
        const value = mod.C_GetAttributeValue(s, key, [{ type: p11.CKA_VALUE }])[0]?.value;
        valueReadable = Buffer.isBuffer(value) && value.length > 0;
      } catch {
        valueReadable = false;
      }
      const len = v(p11.CKA_VALUE_LEN);
      return {
        sensitive: bool(v(p11.CKA_SENSITIVE)),
        extractable: bool(v(p11.CKA_EXTRACTABLE)),
        alwaysSensitive: bool(v(p11.CKA_ALWAYS_SENSITIVE)),
        neverExtractable: bool(v(p11.CKA_NEVER_EXTRACTABLE)),
        valueLength: len === undefined ? 0 : len.readUIntLE(0, Math.min(len.length, 6)),
        valueReadable,
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        mod.C_CloseSession(s);
      } catch {
        // The module may already be finalised.
      }
      release(opts.library);
    },
  };
}

/** CKA_LABEL of a KEK generation: `keyLabel` for the first, `keyLabel.gG` after. */
export function pkcs11GenerationLabel(keyLabel: string, generation: number): string {
  return generation <= 1 ? keyLabel : `${keyLabel}.g${generation}`;
}

/**
 * The generations of an HSM KEK: each a key object of its own in the token (see the header).
 * `createKey` of `opts` provisions generation 1 only; later ones are made by completing a shred.
 */
export function createPkcs11Generations(opts: Pkcs11WrapperOptions): KekGenerations {
  const base = opts.keyLabel ?? 'latchkey-kek';
  /** Labels actually opened, so a KEK found under the configured label is the one destroyed. */
  const opened = new Map<number, string>();
  return {
    wrapper: async (generation, { create }) => {
      const label = pkcs11GenerationLabel(base, generation);
      try {
        const w = createPkcs11Wrapper({
          ...opts,
          keyLabel: label,
          createKey: create || (generation <= 1 && opts.createKey === true),
        });
        opened.set(generation, label);
        return w;
      } catch (err) {
        // A KEK rotated by hand (rewrap to a new label, now configured): the configured label.
        if (create || label === base || !LatchkeyError.is(err, 'KEY_UNAVAILABLE')) throw err;
        const w = createPkcs11Wrapper({ ...opts, keyLabel: base, createKey: false });
        opened.set(generation, base);
        return w;
      }
    },
    destroy: async (generation) =>
      destroyPkcs11Key(opts, opened.get(generation) ?? pkcs11GenerationLabel(base, generation)),
  };
}

/**
 * Destroys every AES key object labelled `label` in the token (C_DestroyObject). None: no-op.
 * @throws LatchkeyError KEY_UNAVAILABLE when the token refuses or cannot be reached.
 */
export function destroyPkcs11Key(opts: Pkcs11WrapperOptions, label: string): void {
  const m = acquire(opts.library);
  const { p11, mod } = m;
  let session: Buffer | undefined;
  try {
    session = openUserSession(m, opts);
    mod.C_FindObjectsInit(session, [
      { type: p11.CKA_CLASS, value: p11.CKO_SECRET_KEY },
      { type: p11.CKA_KEY_TYPE, value: p11.CKK_AES },
      { type: p11.CKA_LABEL, value: label },
    ]);
    const found = mod.C_FindObjects(session, 16);
    mod.C_FindObjectsFinal(session);
    for (const h of found) mod.C_DestroyObject(session, h);
  } catch (err) {
    throw hsmError('cannot destroy the PKCS#11 key', err);
  } finally {
    if (session !== undefined) {
      try {
        mod.C_CloseSession(session);
      } catch {
        // Already gone.
      }
    }
    release(opts.library);
  }
}

/**
 * The HSM as a KeyManager: a local wrapped key store at `path` whose KEK stays in the token
 * (the store's current generation of it, see createPkcs11Generations).
 * @throws LatchkeyError KEY_UNAVAILABLE as createPkcs11Wrapper, or when the store was made with
 *   another KEK.
 */
export function openPkcs11KeyManager(
  opts: Pkcs11WrapperOptions & { path: string; now?: () => number },
): Promise<WrappedKeyManager> {
  const { path, now, ...rest } = opts;
  return openKeyManager({
    store: { path },
    wrapper: createPkcs11Generations(rest),
    mismatchMessage: 'the HSM key does not match this key database',
    ...(now === undefined ? {} : { now }),
  });
}
