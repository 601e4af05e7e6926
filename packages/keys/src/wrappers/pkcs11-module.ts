/**
 * The PKCS#11 module of the HSM adapter (pkcs11.ts): one loaded and initialised module per
 * library path, shared by every wrapper of the process (reference counted), a logged-in user
 * session on a token, and the adapter's error wording.
 */
import { createRequire } from 'node:module';
import type * as Pkcs11Js from 'pkcs11js';
import { LatchkeyError } from '@latchkey/protocol';

type P11 = typeof Pkcs11Js;

export interface Module {
  p11: P11;
  mod: Pkcs11Js.PKCS11;
  refs: number;
}

/** One loaded and initialised module per library path, shared by every wrapper of the process. */
const modules = new Map<string, Module>();

function loadBinding(): P11 {
  const require = createRequire(import.meta.url);
  return require('pkcs11js') as P11;
}

/**
 * The loaded module of `library`, loading and initialising it on first use; pair with release.
 * @throws LatchkeyError KEY_UNAVAILABLE when the module cannot be loaded or initialised.
 */
export function acquire(library: string): Module {
  let m = modules.get(library);
  if (m === undefined) {
    try {
      m = load(library);
    } catch (err) {
      throw hsmError('cannot load the PKCS#11 module', err);
    }
    modules.set(library, m);
  }
  m.refs++;
  return m;
}

function load(library: string): Module {
  const p11 = loadBinding();
  const mod = new p11.PKCS11();
  mod.load(library);
  try {
    mod.C_Initialize();
  } catch (err) {
    if (!(err instanceof p11.Pkcs11Error && err.code === p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
      mod.close();
      throw err;
    }
  }
  return { p11, mod, refs: 0 };
}

export function release(library: string): void {
  const m = modules.get(library);
  if (m === undefined) return;
  if (--m.refs > 0) return;
  modules.delete(library);
  try {
    m.mod.C_Finalize();
  } finally {
    m.mod.close();
  }
}

export function hsmError(message: string, err: unknown): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  return new LatchkeyError('KEY_UNAVAILABLE', message, {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

/**
 * A read-write session on the token labelled `opts.tokenLabel`, logged in as its user.
 * @throws LatchkeyError KEY_UNAVAILABLE when no such token is present; the module's error else.
 */
export function openUserSession(m: Module, opts: { tokenLabel: string; pin: string }): Buffer {
  const { p11, mod } = m;
  const slot = mod
    .C_GetSlotList(true)
    .find((s) => mod.C_GetTokenInfo(s).label.trim() === opts.tokenLabel);
  if (slot === undefined)
    throw new LatchkeyError('KEY_UNAVAILABLE', 'PKCS#11 token not found', {
      detail: opts.tokenLabel,
    });
  const session = mod.C_OpenSession(slot, p11.CKF_SERIAL_SESSION | p11.CKF_RW_SESSION);
  try {
    mod.C_Login(session, p11.CKU_USER, opts.pin);
  } catch (err) {
    // Login state is per application and token: another wrapper of this process logged in.
    if (!(err instanceof p11.Pkcs11Error && err.code === p11.CKR_USER_ALREADY_LOGGED_IN)) {
      mod.C_CloseSession(session);
      throw err;
    }
  }
  return session;
}
