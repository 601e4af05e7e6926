/**
 * The key service over a real socket on 127.0.0.1 with a real SQLite key store in a temporary
 * directory: authorisation, per-contact keys, epochs, certificates, typed errors, CORS, logs.
 */
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { generateSigningKeyPair, verifyWithContext } from '@latchkey/crypto/sign';
import { openInternalKeyManager, type KeyManager } from '@latchkey/keys';
import {
  AUDIENCE_RELAY,
  CertificateBody,
  ContactKeyResponse,
  EpochStatementBody,
  ErrorResponse,
  ServiceKeyResponse,
  type Role,
} from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { startKeyService, type KeyService } from '../src/server.ts';
import { fetchSealedKey } from './_sealed-key.ts';

const secret = crypto.getRandomValues(new Uint8Array(32));
const masterKey = crypto.getRandomValues(new Uint8Array(32));

let dir: string;
let dbPath: string;
let km: KeyManager;
let svc: KeyService;
/** Every content key the service handed out, to scan the database files for afterwards. */
const seenKeys: Uint8Array[] = [];
const logLines: string[] = [];
const tokensUsed: string[] = [];

const token = async (
  contactId: string,
  participantId: string,
  role: Role = 'visitor',
  ttlSeconds = 600,
) => {
  const t = await mintToken(secret, { contactId, participantId, role, ttlSeconds });
  tokensUsed.push(t);
  return t;
};

interface Res {
  status: number;
  headers: Headers;
  body: unknown;
}

async function call(path: string, init: RequestInit = {}, base = svc.url): Promise<Res> {
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === '' ? undefined : (JSON.parse(text) as unknown),
  };
}

function postKey(
  tok: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
  base?: string,
) {
  return call(
    '/v1/contact-key',
    {
      method: 'POST',
      headers: {
        ...(tok === undefined ? {} : { authorization: `Bearer ${tok}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined
        ? {}
        : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    },
    base,
  );
}

function keyOf(res: Res): ContactKeyResponse {
  expect(res.status).toBe(200);
  const parsed = ContactKeyResponse.parse(res.body);
  expect(parsed.key).toBeDefined();
  seenKeys.push(fromBase64Url(parsed.key!));
  return parsed;
}

function errorOf(res: Res, status: number, code: string): void {
  expect({ status: res.status, body: res.body }).toMatchObject({
    status,
    body: { error: { code } },
  });
  expect(ErrorResponse.safeParse(res.body).success).toBe(true);
  expect(res.headers.get('cache-control')).toBe('no-store');
}

/** An HS256 JWT with arbitrary claims, for tokens mintToken refuses to make. */
function rawJwt(claims: Record<string, unknown>, key = secret): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-'));
  dbPath = join(dir, 'keys', 'keys.db');
  km = await openInternalKeyManager({ path: dbPath, masterKey });
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString('utf8'));
      cb();
    },
  });
  svc = await startKeyService({
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    keyManager: km,
    signingKey: generateSigningKeyPair().secretKey,
    logger: { level: 'trace', stream: sink },
    // These tests read the key in the clear; the default (sealed only) has its own test.
    allowPlainKeyDelivery: true,
  });
});

afterAll(async () => {
  await svc?.close();
  await km?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('POST /v1/contact-key', () => {
  it('gives a participant its contact key, the same to every member, another to another contact', async () => {
    const a = keyOf(await postKey(await token('c1', 'visitor1')));
    expect(a).toMatchObject({ contactId: 'c1', epoch: 0, currentEpoch: 0 });
    expect(a.certificate).toBeUndefined();
    const b = keyOf(await postKey(await token('c1', 'agent1', 'agent'), {}));
    expect(b.key).toBe(a.key);
    const other = keyOf(await postKey(await token('c2', 'visitor1')));
    expect(other.contactId).toBe('c2');
    expect(other.key).not.toBe(a.key);
  });

  it('takes the contact from the token, never from the body', async () => {
    const res = await postKey(await token('c3', 'p1'), { contactId: 'c1' });
    errorOf(res, 400, 'BAD_REQUEST');
  });

  it('serves the current and older epochs, and NOT_FOUND for unknown ones', async () => {
    const t = await token('epochs', 'p1');
    const e0 = keyOf(await postKey(t));
    expect(await km.rotate('epochs')).toBe(1);
    const e1 = keyOf(await postKey(t, {}));
    expect(e1).toMatchObject({ epoch: 1, currentEpoch: 1 });
    expect(e1.key).not.toBe(e0.key);
    const old = keyOf(await postKey(t, { epoch: 0 }));
    expect(old).toMatchObject({ epoch: 0, currentEpoch: 1, key: e0.key });
    errorOf(await postKey(t, { epoch: 2 }), 404, 'NOT_FOUND');
    errorOf(await postKey(await token('fresh', 'p1'), { epoch: 3 }), 404, 'NOT_FOUND');
    errorOf(await postKey(t, { epoch: -1 }), 400, 'BAD_REQUEST');
    errorOf(await postKey(t, { epoch: 'x' }), 400, 'BAD_REQUEST');
  });

  it('refuses a destroyed contact with NOT_FOUND', async () => {
    const t = await token('gone', 'p1');
    keyOf(await postKey(t));
    await km.destroy('gone');
    errorOf(await postKey(t), 404, 'NOT_FOUND');
  });

  it('certifies the session key with the service key, bounded by the token expiry', async () => {
    const sk = await call('/v1/service-key');
    expect(sk.status).toBe(200);
    expect(sk.headers.get('cache-control')).toBe('no-store');
    const servicePub = fromBase64Url(ServiceKeyResponse.parse(sk.body).publicKey);
    expect(ServiceKeyResponse.parse(sk.body).publicKey).toBe(svc.servicePublicKey);

    const session = generateSigningKeyPair();
    const before = Date.now();
    const res = keyOf(
      await postKey(await token('cert', 'agent7', 'agent', 120), {
        signingKey: Buffer.from(session.publicKey).toString('base64url'),
      }),
    );
    const cert = res.certificate;
    if (cert === undefined) throw new Error('no certificate');
    const bodyBytes = fromBase64Url(cert.body);
    expect(
      verifyWithContext(servicePub, 'latchkey.v1.cert', bodyBytes, fromBase64Url(cert.sig)),
    ).toBe(true);
    expect(
      verifyWithContext(servicePub, 'latchkey.v1.msgsig', bodyBytes, fromBase64Url(cert.sig)),
    ).toBe(false);
    const body = CertificateBody.parse(JSON.parse(utf8Decode(bodyBytes)));
    expect(body).toMatchObject({
      v: 1,
      alg: 'latchkey.v1.ed25519-cert',
      contactId: 'cert',
      participantId: 'agent7',
      role: 'agent',
      publicKey: Buffer.from(session.publicKey).toString('base64url'),
    });
    expect(body.issuedAt).toBeGreaterThanOrEqual(before);
    expect(body.issuedAt).toBeLessThanOrEqual(Date.now());
    // Token lifetime (120 s) is shorter than the default certificate lifetime (24 h).
    expect(body.notAfter).toBeLessThanOrEqual(before + 121_000);
    expect(body.notAfter).toBeGreaterThan(before + 60_000);
    expect(body.notAfter % 1000).toBe(0);
    // Bound to the epoch of the statement that came with it, which the same key signs.
    expect(body.epoch).toBe(res.currentEpoch);
    const st = EpochStatementBody.parse(JSON.parse(utf8Decode(fromBase64Url(res.statement.body))));
    expect(
      verifyWithContext(
        servicePub,
        'latchkey.v1.epoch-statement',
        fromBase64Url(res.statement.body),
        fromBase64Url(res.statement.sig),
      ),
    ).toBe(true);
    expect(st).toMatchObject({ contactId: 'cert', epoch: res.currentEpoch, removed: [] });
    expect(st.members).toContainEqual({ participantId: 'agent7', role: 'agent' });
    expect(st.epochs.at(-1)?.epoch ?? res.currentEpoch).toBe(res.currentEpoch);

    // Small-order keys (here the identity and the point of order 2) would make a signature that
    // is valid for any message: never certified.
    for (const small of [
      'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      '7P_______________________________________38',
    ]) {
      errorOf(
        await postKey(await token('cert', 'agent7', 'agent'), { signingKey: small }),
        400,
        'BAD_REQUEST',
      );
    }

    errorOf(
      await postKey(await token('cert', 'agent7', 'agent'), { signingKey: 'short' }),
      400,
      'BAD_REQUEST',
    );
  });

  it('answers missing, bad, expired and wrong-audience tokens with typed 401s', async () => {
    const missing = await postKey(undefined, {});
    errorOf(missing, 401, 'AUTH_REQUIRED');
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    errorOf(
      await postKey(undefined, {}, { authorization: 'Basic dXNlcjpwYXNz' }),
      401,
      'AUTH_REQUIRED',
    );
    errorOf(await postKey(undefined, {}, { authorization: 'Bearer' }), 401, 'AUTH_REQUIRED');
    errorOf(await postKey('not.a.jwt', {}), 401, 'AUTH_INVALID');
    const good = await token('c1', 'p1');
    errorOf(await postKey(`${good.slice(0, -4)}AAAA`, {}), 401, 'AUTH_INVALID');
    const otherSecret = await mintToken(new Uint8Array(32).fill(9), {
      contactId: 'c1',
      participantId: 'p1',
      role: 'visitor',
      ttlSeconds: 60,
    });
    errorOf(await postKey(otherSecret, {}), 401, 'AUTH_INVALID');
    const expired = await mintToken(secret, {
      contactId: 'c1',
      participantId: 'p1',
      role: 'visitor',
      ttlSeconds: 60,
      now: 1_000_000,
    });
    errorOf(await postKey(expired, {}), 401, 'AUTH_EXPIRED');
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: 'latchkey',
      sub: 'p1',
      cid: 'c1',
      role: 'visitor',
      iat: now,
      exp: now + 60,
      jti: 'abcdefghijkl',
    };
    errorOf(await postKey(rawJwt({ ...claims, aud: AUDIENCE_RELAY }), {}), 401, 'AUTH_INVALID');
    // The same claims for the right audience pass, so the audience was what failed.
    keyOf(await postKey(rawJwt({ ...claims, aud: 'latchkey:keys' }), {}));
  });

  it('answers malformed, mistyped and oversized bodies with BAD_REQUEST / TOO_LARGE', async () => {
    const t = await token('c1', 'p1');
    errorOf(await postKey(t, '{"epoch":'), 400, 'BAD_REQUEST');
    errorOf(await postKey(t, 'null'), 400, 'BAD_REQUEST');
    errorOf(await postKey(t, '[]'), 400, 'BAD_REQUEST');
    errorOf(
      await call('/v1/contact-key', {
        method: 'POST',
        headers: { authorization: `Bearer ${t}`, 'content-type': 'text/plain' },
        body: '{}',
      }),
      400,
      'BAD_REQUEST',
    );
    errorOf(await postKey(t, { epoch: 0, extra: true }), 400, 'BAD_REQUEST');
    const big = JSON.stringify({ epoch: 0, pad: 'x'.repeat(20_000) });
    errorOf(await postKey(t, big), 413, 'TOO_LARGE');
    // An unauthenticated oversized body is refused for the token, before it is read.
    errorOf(await postKey(undefined, big), 401, 'AUTH_REQUIRED');
    // No body at all means "the current epoch".
    keyOf(await postKey(t));
  });

  it('over plain HTTP hands a key out only sealed to a delivery key, unless told otherwise', async () => {
    const strict = await startKeyService({
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      keyManager: km,
      signingKey: generateSigningKeyPair().secretKey,
    });
    try {
      const tok = await token('c-sealed', 'p1');
      const plain = await postKey(tok, {}, {}, strict.url);
      errorOf(plain, 400, 'BAD_REQUEST');
      expect(JSON.stringify(plain.body)).not.toMatch(/"key"/);
      const sealed = await fetchSealedKey(strict.url, tok, 'p1');
      expect(sealed.status).toBe(200);
      expect(sealed.key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    } finally {
      await strict.close();
    }
  });

  it('answers a failing key manager with KEY_UNAVAILABLE and a degraded health', async () => {
    const broken: KeyManager = {
      getContentKey: () => Promise.reject(new Error('disk on fire')),
      currentEpoch: () => Promise.reject(new Error('disk on fire')),
      rotate: () => Promise.reject(new Error('disk on fire')),
      destroy: () => Promise.reject(new Error('disk on fire')),
      health: () => Promise.resolve({ status: 'degraded', backend: 'test' }),
      close: () => Promise.resolve(),
    };
    const other = await startKeyService({
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      keyManager: broken,
      signingKey: generateSigningKeyPair().secretKey,
      allowPlainKeyDelivery: true,
    });
    try {
      const res = await postKey(await token('c1', 'p1'), {}, {}, other.url);
      errorOf(res, 503, 'KEY_UNAVAILABLE');
      expect(JSON.stringify(res.body)).not.toContain('fire');
      const h = await call('/healthz', {}, other.url);
      expect(h).toMatchObject({ status: 503, body: { status: 'degraded' } });
    } finally {
      await other.close();
    }
  });
});

describe('other routes', () => {
  it('reports health and NOT_FOUND for unknown paths', async () => {
    expect(await call('/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } });
    errorOf(await call('/v1/nothing'), 404, 'NOT_FOUND');
    errorOf(await call('/v1/contact-key'), 404, 'NOT_FOUND'); // GET is not a route
  });
});

describe('CORS', () => {
  it('answers preflight for POST with Authorization and Content-Type from any origin by default', async () => {
    const res = await call('/v1/contact-key', {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:5173',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain(
      'authorization',
    );
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain(
      'content-type',
    );
    const err = await postKey(undefined, {}, { origin: 'http://localhost:5173' });
    errorOf(err, 401, 'AUTH_REQUIRED');
    expect(err.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('keeps to an allowlist when one is given', async () => {
    const limited = await startKeyService({
      host: '127.0.0.1',
      port: 0,
      apiSecret: secret,
      keyManager: km,
      signingKey: generateSigningKeyPair().secretKey,
      allowedOrigins: ['https://support.example.com'],
      allowPlainKeyDelivery: true,
    });
    try {
      const ok = await postKey(
        await token('c1', 'p1'),
        {},
        { origin: 'https://support.example.com' },
        limited.url,
      );
      keyOf(ok);
      expect(ok.headers.get('access-control-allow-origin')).toBe('https://support.example.com');
      expect(ok.headers.get('vary')).toContain('Origin');
      const pre = await call(
        '/v1/contact-key',
        {
          method: 'OPTIONS',
          headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
        },
        limited.url,
      );
      errorOf(pre, 403, 'FORBIDDEN');
      expect(pre.headers.get('access-control-allow-origin')).toBeNull();
      errorOf(
        await postKey(await token('c1', 'p1'), {}, { origin: 'https://evil.example' }, limited.url),
        403,
        'FORBIDDEN',
      );
      // Non-browser callers (no Origin) are unaffected.
      keyOf(await postKey(await token('c1', 'p1'), {}, {}, limited.url));
    } finally {
      await limited.close();
    }
  });
});

describe('what stays secret', () => {
  it('never logs tokens or keys', () => {
    const log = logLines.join('');
    expect(log).toContain('"statusCode":401'); // requests were logged...
    for (const t of tokensUsed) {
      expect(log).not.toContain(t);
      expect(log).not.toContain(t.split('.')[2]);
    }
    for (const k of seenKeys) expect(log).not.toContain(Buffer.from(k).toString('base64url'));
    expect(log.toLowerCase()).not.toContain('bearer');
    expect(log).not.toContain('"epoch":'); // ...but never a body
  });

  it('keeps no unwrapped key in keys.db, -wal or -shm', () => {
    expect(seenKeys.length).toBeGreaterThan(10);
    const files = [dbPath, `${dbPath}-wal`, `${dbPath}-shm`].filter((f) => existsSync(f));
    expect(files.length).toBeGreaterThanOrEqual(2);
    const contents = files.map((f) => readFileSync(f));
    for (const k of seenKeys)
      for (const c of contents) expect(c.includes(Buffer.from(k))).toBe(false);
  });
});
