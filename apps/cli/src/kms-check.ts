/**
 * `latchkey kms check`: a conformance suite an enterprise runs against its own key manager
 * (docs/key-manager-api.yaml, docs/key-management.md). It makes the calls the key service
 * makes, in its order and with its `reason`s, through the real HTTP adapters of @latchkey/keys,
 * then the error cases (unknown key or contact, bad signature, unknown client, tampered body or
 * path, replayed nonce, stale or future timestamp, malformed body) with requests signed by the
 * adapters' own `signKmRequest`. Prints `ok NAME` or `FAIL NAME detail` per check, then
 * `N passed, N failed`; exit 0 only when every check passed.
 *
 * It creates contacts named `kms-check-<random>` at the key manager (the store model destroys
 * them at the end); point it at a test instance or accept those entries in the audit.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { parseArgs } from 'node:util';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { randomBytes } from '@latchkey/crypto/random';
import {
  KM_PATHS,
  KmErrorResponse,
  KmStoreContact,
  KmWrapResponse,
  createHttpWrapper,
  openHttpKeyStoreManager,
  signKmRequest,
  type HttpKeyStoreManager,
  type HttpKeyWrapper,
  type KmClientOptions,
} from '@latchkey/keys';
import { LatchkeyError, type ErrorCode } from '@latchkey/protocol';
import { KEY_START_OPTIONS, keyServiceSettings, type KeyStartFlags } from './keys.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;
type Env = Readonly<Record<string, string | undefined>>;

/** The `--kms-*` flags of `latchkey start`, which `kms check` takes too (same environment). */
export const KMS_CHECK_OPTIONS = Object.fromEntries(
  Object.entries(KEY_START_OPTIONS).filter(([name]) => name.startsWith('kms-')),
) as {
  [
    K in keyof typeof KEY_START_OPTIONS as K extends `kms-${string}` ? K : never
  ]: (typeof KEY_START_OPTIONS)[K];
};

/** More than the 5-minute window of the API, either way. */
const SKEW_MS = 6 * 60_000;

export interface KmsCheckSettings {
  url: string;
  model: 'wrap' | 'store';
  keyId: string;
  clientId: string;
  secret: Uint8Array;
  timeoutMs?: number;
  tls?: KmClientOptions['tls'];
}

/** Why a check failed; its message is the detail printed after `FAIL NAME`. */
class CheckFailed extends Error {}

function expect(cond: boolean, detail: string): asserts cond {
  if (!cond) throw new CheckFailed(detail);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function describe(err: unknown): string {
  if (err instanceof CheckFailed) return err.message;
  if (err instanceof AuthenticationError) return 'DECRYPT_FAILED (422)';
  if (LatchkeyError.is(err))
    return `${err.code} ${err.message}${err.detail === undefined ? '' : ` (${err.detail})`}`;
  return err instanceof Error ? err.message : String(err);
}

/** One request outside the adapters, for the error cases, signed by the adapters' signer. */
interface RawRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: string;
  /** Default: signed now by the configured client. */
  sign?:
    { clientId?: string; secret?: Uint8Array; now?: number; path?: string; body?: string } | 'none';
  /** Headers to send as they are (a replay). */
  headers?: Record<string, string>;
}

interface RawAnswer {
  status: number;
  json: unknown;
  headers: Record<string, string>;
}

class Raw {
  readonly #base: URL;
  readonly #s: KmsCheckSettings;

  constructor(s: KmsCheckSettings) {
    this.#base = new URL(s.url);
    this.#s = s;
  }

  /** The path as sent, with the base path of the URL, as the adapters' client sends it. */
  full(path: string): string {
    return `${this.#base.pathname.replace(/\/$/, '')}${path}`;
  }

  headersFor(r: RawRequest): Record<string, string> {
    if (r.headers !== undefined) return r.headers;
    if (r.sign === 'none') return {};
    const sign = r.sign ?? {};
    return signKmRequest(
      {
        method: r.method,
        path: this.full(sign.path ?? r.path),
        body: Buffer.from(sign.body ?? r.body ?? '', 'utf8'),
      },
      { clientId: sign.clientId ?? this.#s.clientId, secret: sign.secret ?? this.#s.secret },
      sign.now ?? Date.now(),
    );
  }

  /** Over node:http(s) with the same TLS options as the adapters' client (mutual TLS too). */
  async send(r: RawRequest): Promise<RawAnswer> {
    const headers = this.headersFor(r);
    const url = new URL(this.full(r.path), this.#base);
    const body = Buffer.from(r.body ?? '', 'utf8');
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const req = (url.protocol === 'https:' ? https : http).request(
          url,
          {
            method: r.method,
            headers: {
              ...headers,
              accept: 'application/json',
              ...(r.body === undefined ? {} : { 'content-type': 'application/json' }),
              'content-length': String(body.length),
            },
            timeout: this.#s.timeoutMs ?? 2000,
            ...(this.#s.tls ?? {}),
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                text: Buffer.concat(chunks).toString('utf8'),
              }),
            );
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end(body);
      },
    );
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = { notJson: text.slice(0, 80) };
    }
    return { status, json, headers };
  }

  /** Sends and expects an error answer with `status` and one of `codes` in the documented shape. */
  async refused(r: RawRequest, status: number, codes: readonly ErrorCode[]): Promise<void> {
    const a = await this.send(r);
    const err = KmErrorResponse.safeParse(a.json);
    const code = err.success ? err.data.error.code : undefined;
    expect(
      a.status === status && code !== undefined && (codes as readonly string[]).includes(code),
      `want ${status} ${codes.join('|')}, got ${a.status} ${
        code ??
        `with a body that is not {"error":{"code","message"}}: ${JSON.stringify(a.json)?.slice(0, 120)}`
      }`,
    );
  }
}

/**
 * Runs every check against the key manager of `s`, printing one line per check and the totals.
 * @returns EXIT.ok when all passed, else EXIT.error.
 */
export async function runKmsCheck(s: KmsCheckSettings, out: Out): Promise<number> {
  let passed = 0;
  let failed = 0;
  const check = async (name: string, fn: () => Promise<string | void>): Promise<boolean> => {
    try {
      const note = await fn();
      out(note === undefined || note === '' ? `ok ${name}` : `ok ${name} (${note})`);
      passed++;
      return true;
    } catch (err) {
      out(`FAIL ${name} ${describe(err).replace(/\s+/g, ' ')}`);
      failed++;
      return false;
    }
  };
  const client: KmClientOptions = {
    url: s.url,
    auth: { type: 'hmac', clientId: s.clientId, secret: s.secret },
    // One attempt per call and no circuit: each check sees the key manager's own answer.
    retries: 0,
    breakerThreshold: 1_000_000,
    ...(s.timeoutMs === undefined ? {} : { timeoutMs: s.timeoutMs }),
    ...(s.tls === undefined ? {} : { tls: s.tls }),
  };
  const raw = new Raw(s);
  const run = `kms-check-${toBase64Url(randomBytes(6)).replace(/[^A-Za-z0-9]/g, 'x')}`;
  if (s.model === 'wrap') await wrapChecks(s, client, raw, run, check);
  else await storeChecks(client, raw, run, check);
  await authChecks(s, raw, run, check);
  out(`${passed} passed, ${failed} failed`);
  return failed === 0 ? EXIT.ok : EXIT.error;
}

type Check = (name: string, fn: () => Promise<string | void>) => Promise<boolean>;

async function expectDecryptFailed(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AuthenticationError) return;
    throw new CheckFailed(`want 422 DECRYPT_FAILED, got ${describe(err)}`);
  }
  throw new CheckFailed('want 422 DECRYPT_FAILED, got a key');
}

/** The wrap model: what the key service's wrapped key store asks (wrapped.ts, http.ts). */
async function wrapChecks(
  s: KmsCheckSettings,
  client: KmClientOptions,
  raw: Raw,
  run: string,
  check: Check,
): Promise<void> {
  const wrapper: HttpKeyWrapper = createHttpWrapper({ ...client, keyId: s.keyId });
  const generating = createHttpWrapper({ ...client, keyId: s.keyId, useGenerate: true });
  const c = `${run}-a`;
  const k0 = randomBytes(32);
  const k1 = randomBytes(32);
  let w0: Uint8Array | undefined;
  let w1: Uint8Array | undefined;
  let operations: readonly string[] = [];
  try {
    await check('health', async () => {
      const h = await wrapper.health();
      expect(
        h.status === 'ok',
        `status ${h.status}${h.detail === undefined ? '' : `: ${h.detail}`}`,
      );
    });
    await check('metadata', async () => {
      const m = await wrapper.metadata();
      operations = m.operations;
      expect(m.keyId === s.keyId, `keyId ${m.keyId}, want ${s.keyId}`);
      expect(m.state === 'enabled', `state ${m.state}`);
      for (const op of ['wrap', 'unwrap'])
        expect(m.operations.includes(op), `operations lack ${op}`);
    });
    // A new contact: its epoch-0 key is wrapped with reason create.
    await check('wrap-create', async () => {
      w0 = await wrapper.wrap(k0, { contactId: c, epoch: 0, reason: 'create' });
    });
    // A participant asks for the key: unwrap with reason fetch.
    await check('unwrap-fetch', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const k = await wrapper.unwrap(w0, { contactId: c, epoch: 0, reason: 'fetch' });
      expect(equalBytes(k, k0), 'unwrap answered another key than the one wrapped');
    });
    // A kick, transfer or schedule adds an epoch: wrap with reason rotate.
    await check('wrap-rotate', async () => {
      w1 = await wrapper.wrap(k1, { contactId: c, epoch: 1, reason: 'rotate' });
      expect(w0 === undefined || !equalBytes(w0, w1), 'two keys wrapped to the same bytes');
    });
    await check('unwrap-rotated', async () => {
      expect(w1 !== undefined, 'no wrapped key (wrap-rotate failed)');
      const k = await wrapper.unwrap(w1, { contactId: c, epoch: 1, reason: 'fetch' });
      expect(equalBytes(k, k1), 'unwrap answered another key than the one wrapped');
    });
    await check('unwrap-old-epoch', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const k = await wrapper.unwrap(w0, { contactId: c, epoch: 0, reason: 'fetch' });
      expect(equalBytes(k, k0), 'unwrap answered another key than the one wrapped');
    });
    // contactId and epoch are additional authenticated data.
    await check('bound-to-epoch', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      await expectDecryptFailed(wrapper.unwrap(w0, { contactId: c, epoch: 1, reason: 'fetch' }));
    });
    await check('bound-to-contact', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      await expectDecryptFailed(
        wrapper.unwrap(w0, { contactId: `${run}-b`, epoch: 0, reason: 'fetch' }),
      );
    });
    await check('tampered-wrapped', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const t = Uint8Array.from(w0);
      t[t.length - 1] = (t[t.length - 1] ?? 0) ^ 1;
      await expectDecryptFailed(wrapper.unwrap(t, { contactId: c, epoch: 0, reason: 'fetch' }));
    });
    // Another key id must not open this key's wraps: unknown (404) or a separate key (422).
    await check('unknown-key-id', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const other = `${run}-unknown-kek`;
      const meta = await raw.send({ method: 'GET', path: KM_PATHS.key(other) });
      if (meta.status === 404) return '404';
      expect(
        meta.status === 200,
        `GET ${KM_PATHS.key(other)}: want 404 (or 200), got ${meta.status}`,
      );
      const a = await raw.send({
        method: 'POST',
        path: KM_PATHS.unwrap(other),
        body: JSON.stringify({ contactId: c, epoch: 0, reason: 'fetch', wrapped: toBase64Url(w0) }),
      });
      const code = KmErrorResponse.safeParse(a.json);
      expect(
        (a.status === 404 || a.status === 422) && code.success,
        `unwrap under key id ${other}: want 404 or 422 DECRYPT_FAILED, got ${a.status}`,
      );
      return `created on first use; ${a.status} ${code.data?.error.code ?? ''} under it`.trim();
    });
    // Optional endpoints: implemented and right, or 404.
    await check('generate', async () => {
      if (!operations.includes('generate')) {
        const a = await raw.send({
          method: 'POST',
          path: KM_PATHS.generate(s.keyId),
          body: JSON.stringify({ contactId: `${run}-g`, epoch: 0, reason: 'create' }),
        });
        expect(a.status === 404, `not in metadata operations: want 404, got ${a.status}`);
        return 'optional, not offered: 404';
      }
      const g = generating.generate;
      expect(g !== undefined, 'adapter without generate');
      const ctx = { contactId: `${run}-g`, epoch: 0, reason: 'create' } as const;
      const { key, wrapped } = await g(ctx);
      const k = await wrapper.unwrap(wrapped, { ...ctx, reason: 'fetch' });
      expect(equalBytes(k, key), 'the generated key does not unwrap to itself');
    });
    await check('rewrap', async () => {
      expect(w0 !== undefined, 'no wrapped key (wrap-create failed)');
      const a = await raw.send({
        method: 'POST',
        path: KM_PATHS.rewrap(s.keyId),
        body: JSON.stringify({
          contactId: c,
          epoch: 0,
          reason: 'rewrap',
          wrapped: toBase64Url(w0),
        }),
      });
      if (!operations.includes('rewrap')) {
        expect(a.status === 404, `not in metadata operations: want 404, got ${a.status}`);
        return 'optional, not offered: 404';
      }
      const r = KmWrapResponse.safeParse(a.json);
      expect(a.status === 200 && r.success, `want 200 {wrapped, keyVersion}, got ${a.status}`);
      const k = await wrapper.unwrap(fromBase64Url(r.data.wrapped), {
        contactId: c,
        epoch: 0,
        reason: 'fetch',
      });
      expect(equalBytes(k, k0), 'the re-wrapped key unwraps to another key');
    });
    // A shred: the key service tells the key manager, which then refuses the contact (403).
    await check('destroy', async () => {
      const d = `${run}-d`;
      const key = randomBytes(32);
      const w = await wrapper.wrap(key, { contactId: d, epoch: 0, reason: 'create' });
      key.fill(0);
      if (!operations.includes('destroy')) {
        const a = await raw.send({
          method: 'POST',
          path: KM_PATHS.destroy(s.keyId),
          body: JSON.stringify({ contactId: d, reason: 'destroy' }),
        });
        expect(a.status === 404, `not in metadata operations: want 404, got ${a.status}`);
        return 'optional, not offered: 404';
      }
      const destroy = wrapper.destroyContact;
      expect(destroy !== undefined, 'adapter without destroy');
      await destroy.call(wrapper, d);
      await raw.refused(
        {
          method: 'POST',
          path: KM_PATHS.unwrap(s.keyId),
          body: JSON.stringify({
            contactId: d,
            epoch: 0,
            reason: 'fetch',
            wrapped: toBase64Url(w),
          }),
        },
        403,
        ['FORBIDDEN'],
      );
      await destroy.call(wrapper, d); // idempotent
    });
    await check('malformed-body', async () => {
      await raw.refused(
        {
          method: 'POST',
          path: KM_PATHS.wrap(s.keyId),
          body: JSON.stringify({ contactId: c, epoch: 0, reason: 'create', key: 'c2hvcnQ' }),
        },
        400,
        ['BAD_REQUEST'],
      );
    });
    await check('body-not-json', async () => {
      await raw.refused(
        { method: 'POST', path: KM_PATHS.unwrap(s.keyId), body: '{"contactId":' },
        400,
        ['BAD_REQUEST'],
      );
    });
  } finally {
    await wrapper.close();
    await generating.close();
    k0.fill(0);
    k1.fill(0);
  }
}

/** The key-store model: what the key service's store adapter asks (http.ts). */
async function storeChecks(
  client: KmClientOptions,
  raw: Raw,
  run: string,
  check: Check,
): Promise<void> {
  const km: HttpKeyStoreManager = openHttpKeyStoreManager(client);
  const c = `${run}-a`;
  let k0: Uint8Array | undefined;
  try {
    await check('health', async () => {
      const h = await km.health();
      expect(
        h.status === 'ok',
        `status ${h.status}${h.detail === undefined ? '' : `: ${h.detail}`}`,
      );
    });
    // A new contact starts with a fetch of its current key, which must be 404...
    await check('unknown-contact', async () => {
      await raw.refused(
        { method: 'GET', path: `${KM_PATHS.storeKey(c, 'current')}?reason=fetch` },
        404,
        ['NOT_FOUND'],
      );
    });
    // ... then the adapter creates it (reason create) and fetches again.
    await check('create', async () => {
      const k = await km.getContentKey(c);
      expect(k.epoch === 0 && k.currentEpoch === 0, `epoch ${k.epoch}/${k.currentEpoch}, want 0/0`);
      k0 = k.key;
    });
    await check('create-idempotent', async () => {
      const a = await raw.send({
        method: 'POST',
        path: KM_PATHS.storeContact(c),
        body: JSON.stringify({ reason: 'create' }),
      });
      const r = KmStoreContact.safeParse(a.json);
      expect(a.status === 200 && r.success, `want 200 {contactId, currentEpoch}, got ${a.status}`);
      expect(r.data.currentEpoch === 0, `currentEpoch ${r.data.currentEpoch}, want 0`);
      const k = await km.getContentKey(c, 0);
      expect(k0 !== undefined && equalBytes(k.key, k0), 'creating again changed the key');
    });
    await check('current-epoch', async () => {
      const e = await km.currentEpoch(c);
      expect(e === 0, `currentEpoch ${e}, want 0`);
    });
    await check('rotate', async () => {
      const e = await km.rotate(c);
      expect(e === 1, `currentEpoch ${e}, want 1`);
    });
    await check('fetch-current', async () => {
      const k = await km.getContentKey(c);
      expect(k.epoch === 1 && k.currentEpoch === 1, `epoch ${k.epoch}/${k.currentEpoch}, want 1/1`);
      expect(k0 === undefined || !equalBytes(k.key, k0), 'rotation kept the same key');
    });
    await check('fetch-old-epoch', async () => {
      const k = await km.getContentKey(c, 0);
      expect(k.epoch === 0 && k.currentEpoch === 1, `epoch ${k.epoch}/${k.currentEpoch}, want 0/1`);
      expect(k0 !== undefined && equalBytes(k.key, k0), 'epoch 0 answered another key');
    });
    await check('unknown-epoch', async () => {
      await raw.refused({ method: 'GET', path: `${KM_PATHS.storeKey(c, 99)}?reason=fetch` }, 404, [
        'NOT_FOUND',
      ]);
    });
    await check('malformed-body', async () => {
      await raw.refused(
        { method: 'POST', path: KM_PATHS.storeRotate(c), body: JSON.stringify({ reason: 'why' }) },
        400,
        ['BAD_REQUEST'],
      );
    });
    await check('body-not-json', async () => {
      await raw.refused(
        { method: 'POST', path: KM_PATHS.storeContact(c), body: '{"reason":' },
        400,
        ['BAD_REQUEST'],
      );
    });
    // A shred: DELETE ...?reason=destroy, then 404 for ever, creation included.
    await check('destroy', async () => {
      await km.destroy(c);
    });
    await check('destroyed-fetch', async () => {
      await raw.refused({ method: 'GET', path: `${KM_PATHS.storeKey(c, 0)}?reason=fetch` }, 404, [
        'NOT_FOUND',
      ]);
    });
    await check('destroyed-create', async () => {
      await raw.refused(
        {
          method: 'POST',
          path: KM_PATHS.storeContact(c),
          body: JSON.stringify({ reason: 'create' }),
        },
        404,
        ['NOT_FOUND'],
      );
    });
    await check('destroy-idempotent', async () => {
      await km.destroy(c);
    });
  } finally {
    await km.close();
    k0?.fill(0);
  }
}

/** Request authentication (docs/key-management.md "Authentication"), for either model. */
async function authChecks(s: KmsCheckSettings, raw: Raw, run: string, check: Check): Promise<void> {
  // A POST with a body the key manager would accept, so that only the signature is at fault.
  const post =
    s.model === 'wrap'
      ? {
          method: 'POST' as const,
          path: KM_PATHS.wrap(s.keyId),
          body: JSON.stringify({
            contactId: `${run}-auth`,
            epoch: 0,
            reason: 'create',
            key: toBase64Url(randomBytes(32)),
          }),
        }
      : {
          method: 'POST' as const,
          path: KM_PATHS.storeContact(`${run}-auth`),
          body: JSON.stringify({ reason: 'create' }),
        };
  const health = { method: 'GET' as const, path: KM_PATHS.health };
  await check('unsigned', async () => {
    await raw.refused({ ...post, sign: 'none' }, 401, ['AUTH_REQUIRED', 'AUTH_INVALID']);
  });
  await check('bad-signature', async () => {
    await raw.refused({ ...post, sign: { secret: randomBytes(32) } }, 401, ['AUTH_INVALID']);
  });
  await check('unknown-client', async () => {
    await raw.refused({ ...post, sign: { clientId: `${run}-nobody` } }, 401, ['AUTH_INVALID']);
  });
  await check('tampered-body', async () => {
    const other = post.body.replace('"create"', '"rotate"');
    await raw.refused({ ...post, sign: { body: other } }, 401, ['AUTH_INVALID']);
  });
  await check('tampered-path', async () => {
    await raw.refused({ ...post, sign: { path: KM_PATHS.storeContact(`${run}-elsewhere`) } }, 401, [
      'AUTH_INVALID',
    ]);
  });
  await check('stale-timestamp', async () => {
    await raw.refused({ ...health, sign: { now: Date.now() - SKEW_MS } }, 401, ['AUTH_EXPIRED']);
  });
  await check('future-timestamp', async () => {
    await raw.refused({ ...health, sign: { now: Date.now() + SKEW_MS } }, 401, ['AUTH_EXPIRED']);
  });
  await check('replayed-nonce', async () => {
    const first = await raw.send(health);
    expect(first.status === 200, `first request: want 200, got ${first.status}`);
    await raw.refused({ ...health, headers: first.headers }, 401, ['AUTH_INVALID']);
  });
}

/**
 * `latchkey kms check [--kms-url URL] [--kms-model wrap|store] [--kms-key-id ID]
 * [--kms-client-id ID] [--kms-secret-file FILE] [--kms-timeout 2s]`, each flag else its
 * `LATCHKEY_KMS_*` variable as for `latchkey start --key-manager http`; the secret from
 * `LATCHKEY_KMS_SECRET` or the file.
 * @throws UsageError for a missing or malformed setting.
 */
export async function kms(
  argv: readonly string[],
  out: Out,
  env: Env = process.env,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'check') throw new UsageError('kms takes check');
  let values: KeyStartFlags;
  try {
    ({ values } = parseArgs({
      args: [...rest],
      options: KMS_CHECK_OPTIONS,
      allowPositionals: false,
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { keyManager } = keyServiceSettings({ ...values, 'key-manager': 'http' }, env);
  if (keyManager.kind !== 'http') throw new UsageError('kms check needs an http key manager');
  return runKmsCheck(
    {
      url: keyManager.url,
      model: keyManager.model ?? 'wrap',
      keyId: keyManager.keyId ?? 'latchkey-kek',
      clientId: keyManager.clientId ?? 'latchkey',
      secret: keyManager.secret,
      ...(keyManager.timeoutMs === undefined ? {} : { timeoutMs: keyManager.timeoutMs }),
      ...(keyManager.tls === undefined ? {} : { tls: keyManager.tls }),
    },
    out,
  );
}
