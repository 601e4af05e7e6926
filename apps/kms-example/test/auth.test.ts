/** The reference key manager refuses bad signatures, stale timestamps and replays, and audits. */
import * as http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KM_AUTH_HEADERS, signKmRequest } from '@latchkey/keys';
import { CLIENT, SECRET, withKms, type Env } from './_setup.ts';

let env: Env;
beforeEach(async () => {
  env = await withKms({ windowMs: 60_000 });
});
afterEach(async () => {
  await env.cleanup();
});

interface Sent {
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}

function send(
  method: string,
  path: string,
  body: string,
  headers: Record<string, string>,
): Promise<Sent> {
  const url = new URL(path, env.kms.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent: false,
        headers: {
          ...headers,
          ...(body === '' ? {} : { 'content-type': 'application/json' }),
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: text === '' ? {} : (JSON.parse(text) as Sent['body']),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const wrapBody = JSON.stringify({
  contactId: 'c1',
  epoch: 0,
  reason: 'create',
  key: Buffer.alloc(32, 7).toString('base64url'),
});
const path = '/v1/keys/kek/wrap';
const sign = (body = wrapBody, now = Date.now(), p = path, secret = SECRET) =>
  signKmRequest(
    { method: 'POST', path: p, body: Buffer.from(body) },
    { clientId: CLIENT, secret },
    now,
  );

describe('reference key manager: request authentication', () => {
  it('accepts a correctly signed request', async () => {
    const r = await send('POST', path, wrapBody, sign());
    expect(r.status).toBe(200);
    expect(typeof r.body.wrapped).toBe('string');
  });

  it('refuses a bad signature, a wrong secret, a changed body or path, and missing headers', async () => {
    const h = sign();
    const sig = h[KM_AUTH_HEADERS.signature] ?? '';
    const flipped = `${sig.slice(0, -2)}${sig.endsWith('AA') ? 'AB' : 'AA'}`;
    const cases: [string, Record<string, string>, string, string][] = [
      ['flipped signature', { ...h, [KM_AUTH_HEADERS.signature]: flipped }, wrapBody, path],
      [
        'wrong secret',
        sign(wrapBody, Date.now(), path, new Uint8Array(32).fill(1)),
        wrapBody,
        path,
      ],
      ['body changed after signing', sign(), wrapBody.replace('"epoch":0', '"epoch":1'), path],
      ['path changed after signing', sign(), wrapBody, '/v1/keys/other/wrap'],
      ['unknown client', { ...sign(), [KM_AUTH_HEADERS.client]: 'mallory' }, wrapBody, path],
    ];
    for (const [, headers, body, p] of cases) {
      const r = await send('POST', p, body, headers);
      expect(r.status).toBe(401);
      expect(r.body.error?.code).toBe('AUTH_INVALID');
    }
    const none = await send('POST', path, wrapBody, {});
    expect(none.status).toBe(401);
    expect(none.body.error?.code).toBe('AUTH_REQUIRED');
  });

  it('refuses a stale or future timestamp outside the window', async () => {
    for (const skew of [-61_000, 61_000]) {
      const r = await send('POST', path, wrapBody, sign(wrapBody, Date.now() + skew));
      expect(r.status).toBe(401);
      expect(r.body.error?.code).toBe('AUTH_EXPIRED');
    }
    expect((await send('POST', path, wrapBody, sign(wrapBody, Date.now() - 30_000))).status).toBe(
      200,
    );
  });

  it('refuses a replay of a request it already served, also after a restart', async () => {
    const h = sign();
    expect((await send('POST', path, wrapBody, h)).status).toBe(200);
    const again = await send('POST', path, wrapBody, h);
    expect(again.status).toBe(401);
    expect(again.body.error?.code).toBe('AUTH_INVALID');
    // The nonce memory lives in the key manager's database.
    const h2 = sign();
    expect((await send('POST', path, wrapBody, h2)).status).toBe(200);
    await env.kms.close();
    const { startKms } = await import('../src/kms.ts');
    const { ROOT } = await import('./_setup.ts');
    const restarted = await startKms({
      path: env.kmsPath,
      rootKey: ROOT,
      clients: { [CLIENT]: SECRET },
      port: env.kms.port,
    });
    try {
      const r = await send('POST', path, wrapBody, h2);
      expect(r.status).toBe(401);
    } finally {
      await restarted.close();
    }
  });

  it('audits every request with its outcome and no key material', async () => {
    await send('POST', path, wrapBody, sign());
    await send('POST', path, wrapBody, {});
    const audit = env.kms.audit();
    expect(audit.map((a) => [a.operation, a.status, a.outcome])).toEqual([
      ['wrap', 200, 'ok'],
      ['auth', 401, 'refused'],
    ]);
    expect(audit[0]).toMatchObject({
      clientId: CLIENT,
      contactId: 'c1',
      epoch: 0,
      reason: 'create',
      method: 'POST',
      path: '/v1/keys/:keyId/wrap',
    });
    expect(JSON.stringify(audit)).not.toContain(Buffer.alloc(32, 7).toString('base64url'));
  });
});
