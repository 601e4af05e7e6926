/**
 * The file API against hostile and malformed requests, over real HTTP on 127.0.0.1: bad blob
 * ids and paths, bad offsets, types and bodies, huge headers, bad tokens, odd ranges, unknown
 * methods, rate limits; every refusal is a JSON error with its code, and the relay keeps
 * serving. CORS: preflights and the headers of actual answers, with and without an origin
 * allowlist.
 */
import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { Caller, errorCode, randomData, fileRelays } from './_files.ts';
import { token } from './_helpers.ts';

const start = fileRelays();

/** A raw request (no fetch normalisation): status and body. */
function raw(
  base: string,
  path: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    // `path` as given: a URL string would have its dot segments resolved by the client.
    const req = request({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('hostile input', () => {
  it('refuses bad paths, offsets, types, bodies and tokens with JSON errors, and keeps serving', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const blob = await v.newBlob(1000);
    const auth = await v.headers();
    for (const path of [
      '/v1/files/short',
      `/v1/files/${'A'.repeat(23)}`,
      '/v1/files/%2e%2e%2f%2e%2e%2fm.db',
      `/v1/files/${blob}/../../x`,
      `/v1/files/${blob}/nope`,
      `/v1/files/${'A'.repeat(5000)}`,
    ]) {
      const res = await raw(r.http, path, 'GET', auth);
      expect(res.status, path).toBe(404);
      expect(JSON.parse(res.body).error.code).toBe('NOT_FOUND');
    }
    expect((await raw(r.http, `/v1/files/${blob}`, 'DELETE', auth)).status).toBe(404);
    for (const offset of ['-1', '1e3', '', '0x0', '99999999999999999999', '1.5']) {
      const res = await v.patch(blob, offset, randomData(10));
      expect(res.status, offset).toBe(400);
      expect(await errorCode(res)).toBe('BAD_REQUEST');
    }
    for (const type of [undefined, 'application/octet-stream', 'text/plain']) {
      const res = await fetch(`${r.http}/v1/files/${blob}`, {
        method: 'PATCH',
        headers: {
          ...auth,
          'upload-offset': '0',
          ...(type === undefined ? {} : { 'content-type': type }),
        },
        body: randomData(10) as Uint8Array<ArrayBuffer>,
      });
      expect(res.status).toBe(400);
    }
    for (const body of [
      '{"size":"1000"}',
      '{"size":-1}',
      '{"size":1.5}',
      '{"size":71}',
      '{"size":100,"x":1}',
      '[]',
      'not json',
      '{"size":1e400}',
    ]) {
      const res = await raw(
        r.http,
        '/v1/files',
        'POST',
        { ...auth, 'content-type': 'application/json' },
        body,
      );
      expect(res.status, body).toBe(400);
      expect(JSON.parse(res.body).error.code).toBe('BAD_REQUEST');
    }
    const huge = await raw(
      r.http,
      '/v1/files',
      'POST',
      { ...auth, 'content-type': 'application/json' },
      `{"size":100,"pad":"${'x'.repeat(20_000)}"}`,
    );
    expect(huge.status).toBe(413);
    const bigHeader = await raw(r.http, '/v1/files', 'POST', {
      ...auth,
      'x-pad': 'x'.repeat(20_000),
    }).catch(() => ({ status: 0, body: '' }));
    expect([0, 431]).toContain(bigHeader.status);
    for (const [authorization, code] of [
      ['Bearer nope', 'AUTH_INVALID'],
      ['Basic abc', 'AUTH_INVALID'],
      [`Bearer ${'x'.repeat(9000)}`, 'AUTH_INVALID'],
      [
        `Bearer ${await token('c1', 'v1', 'visitor', { now: Math.floor(Date.now() / 1000) - 3600, ttlSeconds: 60 })}`,
        'AUTH_EXPIRED',
      ],
    ] as const) {
      const res = await raw(r.http, `/v1/files/${blob}/upload`, 'GET', { authorization });
      expect(res.status).toBe(401);
      expect(JSON.parse(res.body).error.code).toBe(code);
    }
    // A huge announced body is refused at once, without reading (or draining) it.
    const hugeBody = await new Promise<number>((resolve, reject) => {
      const u = new URL(r.http);
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: `/v1/files/${blob}`,
          method: 'PATCH',
          headers: {
            ...auth,
            'content-type': 'application/offset+octet-stream',
            'upload-offset': '0',
            'content-length': String(2 ** 40),
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', reject);
      req.write(randomData(1000));
    });
    expect(hugeBody).toBe(413);
    const full = await fetch(`${r.http}/healthz`);
    expect(full.status).toBe(200);
    expect((await v.state(blob)).status).toBe(200);
  });

  it('answers odd ranges: ignored, clipped or 416, never past the end', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const data = randomData(100);
    const url = await v.linkUrl(await v.upload(data));
    const cases: [string, number, number?][] = [
      ['bytes=5-2', 200],
      ['bytes=abc', 200],
      ['bytes=0-1,3-4', 200],
      ['items=0-1', 200],
      ['bytes=0-0', 206, 1],
      ['bytes=90-1000', 206, 10],
      ['bytes=-1000', 206, 100],
      ['bytes=100-', 416],
      ['bytes=99999999999999999-', 416],
      ['bytes=-0', 416],
    ];
    for (const [range, status, length] of cases) {
      const res = await fetch(url, { headers: { range } });
      expect(res.status, range).toBe(status);
      const body = Buffer.from(await res.arrayBuffer());
      if (status === 200) expect(body.length).toBe(100);
      if (length !== undefined) expect(body.length, range).toBe(length);
    }
  });

  it('rate-limits a participant', async () => {
    const r = await start({ files: { participantRate: { perSecond: 0.001, burst: 3 } } });
    const v = new Caller(r.http, 'c1', 'v1');
    const blob = await v.newBlob(100);
    expect((await v.state(blob)).status).toBe(200);
    expect((await v.state(blob)).status).toBe(200);
    const limited = await v.state(blob);
    expect(limited.status).toBe(429);
    expect(await errorCode(limited)).toBe('RATE_LIMITED');
    // Another participant has its own budget.
    expect((await new Caller(r.http, 'c1', 'a1', 'agent').create(100)).status).toBe(201);
  });
});

describe('CORS', () => {
  it('answers preflights and sets headers for any origin without an allowlist', async () => {
    const r = await start();
    const pre = await fetch(`${r.http}/v1/files/AAAAAAAAAAAAAAAAAAAAAA`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://shop.example',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization, content-type, upload-offset',
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-methods')).toContain('PATCH');
    for (const h of ['authorization', 'content-type', 'upload-offset'])
      expect(pre.headers.get('access-control-allow-headers')).toContain(h);
    expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
    const v = new Caller(r.http, 'c1', 'v1');
    const res = await fetch(`${r.http}/v1/files`, {
      method: 'POST',
      headers: await v.headers({
        'content-type': 'application/json',
        origin: 'https://shop.example',
      }),
      body: '{"size":100}',
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    for (const h of ['upload-offset', 'content-range', 'content-length'])
      expect(res.headers.get('access-control-expose-headers')).toContain(h);
  });

  it('allows only the configured origins when the relay has an allowlist', async () => {
    const r = await start({ admission: { allowedOrigins: ['https://chat.example'] } });
    const pre = (origin: string) =>
      fetch(`${r.http}/v1/files`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      });
    const ok = await pre('https://chat.example');
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://chat.example');
    const no = await pre('https://evil.example');
    expect(no.headers.get('access-control-allow-origin')).toBeNull();
    expect(no.headers.get('access-control-allow-methods')).toBeNull();
  });
});
