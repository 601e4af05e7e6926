/**
 * The demo backend over real HTTP: tokens are minted server-side with the API secret, the secret
 * shows up in no response, and the guard refuses cross-origin and non-loopback-Host requests,
 * and anything without the per-start demo key that only the printed `visitor:`/`agent:` URLs
 * carry (in their fragment), such as an outsider's request through a same-host reverse proxy.
 */
import { createHmac } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeb, type RunningWeb } from '../src/index.ts';

const secret = new Uint8Array(32).map((_, i) => i + 1);
const serviceKey = 'A'.repeat(43);
let web: RunningWeb;

beforeAll(async () => {
  web = await startWeb({
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    relayUrl: 'ws://127.0.0.1:1',
    keysUrl: 'http://127.0.0.1:2',
    serviceKey,
  });
});

afterAll(async () => {
  await web?.close();
});

/** The claims of an HS256 token, after checking its signature with the API secret. */
function claims(token: string): Record<string, unknown> {
  const [header, payload, sig] = token.split('.');
  const expected = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  expect(sig).toBe(expected);
  return JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function secretForms(): string[] {
  const b = Buffer.from(secret);
  return [b.toString('base64url'), b.toString('base64'), b.toString('hex')];
}

/** The per-start demo key, as the printed URLs carry it (`#demo-key=...`). */
function demoKey(): string {
  const key = new URLSearchParams(new URL(web.visitorUrl).hash.slice(1)).get('demo-key');
  expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
  return key!;
}

async function post(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${web.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-latchkey-demo-key': demoKey(), ...headers },
    body: JSON.stringify(body),
  });
}

async function get(path: string): Promise<Response> {
  return fetch(`${web.url}${path}`, { headers: { 'x-latchkey-demo-key': demoKey() } });
}

/** Raw request, to send a Host header that fetch would not let through. */
function rawGet(
  path: string,
  host: string,
  headers: Record<string, string> = { 'x-latchkey-demo-key': demoKey() },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: web.port, path, headers: { ...headers, host } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('startWeb', () => {
  it('prints URLs of a ready demo conversation on both sides', () => {
    expect(web.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const contact = new URL(web.visitorUrl).searchParams.get('contact');
    expect(contact).toMatch(/^c-[A-Za-z0-9_-]+$/);
    const key = demoKey();
    expect(web.visitorUrl).toBe(`${web.url}/demo?contact=${contact}#demo-key=${key}`);
    expect(web.agentUrl).toBe(`${web.url}/agent?contact=${contact}#demo-key=${key}`);
  });

  it('serves the pages, the bundles and security headers', async () => {
    for (const path of ['/', '/agent', '/demo', '/widget.js', '/agent.js']) {
      const res = await fetch(`${web.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
    const page = await fetch(`${web.url}/agent`);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain('ws://127.0.0.1:1');
    // The relay's file API (its HTTP origin) and attachment previews (object URLs), nothing more.
    expect(csp).toMatch(/connect-src [^;]*http:\/\/127\.0\.0\.1:1[ ;]/);
    expect(csp).toMatch(/img-src 'self' data: blob:(;|$)/);
    const demo = await (await fetch(web.visitorUrl)).text();
    const contact = new URL(web.visitorUrl).searchParams.get('contact');
    expect(demo).toContain(`data-contact="${contact}"`);
    // An unknown or malformed contact is not echoed into the page.
    const other = await (await fetch(`${web.url}/demo?contact=%22%3E%3Cscript%3E`)).text();
    expect(other).not.toContain('data-contact=');
  });
});

describe('demo backend', () => {
  it('creates a new contact per visitor session and mints a visitor token server-side', async () => {
    const a = (await (await post('/api/demo/visitor-session', {})).json()) as Record<
      string,
      string
    >;
    const b = (await (await post('/api/demo/visitor-session', {})).json()) as Record<
      string,
      string
    >;
    expect(a.contactId).not.toBe(b.contactId);
    expect(a).toMatchObject({
      role: 'visitor',
      relayUrl: 'ws://127.0.0.1:1',
      keysUrl: 'http://127.0.0.1:2',
      serviceKey,
      // No scanner unless the web server is told so (attachments-scanning.test.ts: true).
      scanning: false,
    });
    const c = claims(a.token!);
    expect(c).toMatchObject({
      iss: 'latchkey',
      sub: a.participantId,
      cid: a.contactId,
      role: 'visitor',
    });
    expect(Object.keys(c).sort()).toEqual([
      'aud',
      'cid',
      'exp',
      'iat',
      'iss',
      'jti',
      'role',
      'sub',
    ]);
  });

  it('rejoins a known open contact and mints agent tokens for it', async () => {
    const contact = new URL(web.visitorUrl).searchParams.get('contact')!;
    const v = (await (
      await post('/api/demo/visitor-session', { contactId: contact })
    ).json()) as Record<string, string>;
    expect(v.contactId).toBe(contact);
    const list = (await (await get('/api/demo/contacts')).json()) as {
      contacts: { contactId: string; createdAt: number }[];
    };
    expect(list.contacts.map((c) => c.contactId)).toContain(contact);
    const times = list.contacts.map((c) => c.createdAt);
    expect([...times].sort((x, y) => y - x)).toEqual(times);
    const agent = (await (
      await post('/api/demo/agent-session', { contactId: contact })
    ).json()) as Record<string, string>;
    expect(claims(agent.token!)).toMatchObject({
      cid: contact,
      role: 'agent',
      sub: agent.participantId,
    });
    expect((await post('/api/demo/agent-session', { contactId: 'nope' })).status).toBe(404);
  });

  it('closes a contact (placeholder action): it leaves the open list', async () => {
    const v = (await (await post('/api/demo/visitor-session', {})).json()) as Record<
      string,
      string
    >;
    const res = await post(`/api/demo/contacts/${v.contactId}/close`, {});
    expect(res.status).toBe(200);
    const list = (await (await get('/api/demo/contacts')).json()) as {
      contacts: { contactId: string }[];
    };
    expect(list.contacts.map((c) => c.contactId)).not.toContain(v.contactId);
    expect((await post('/api/demo/agent-session', { contactId: v.contactId })).status).toBe(404);
  });

  it('never sends the API secret in any response', async () => {
    const bodies = [
      await (await post('/api/demo/visitor-session', {})).text(),
      await (await get('/api/demo/contacts')).text(),
      await (await fetch(`${web.url}/widget.js`)).text(),
      await (await fetch(`${web.url}/agent.js`)).text(),
      await (await fetch(`${web.url}/demo`)).text(),
    ];
    const contact = new URL(web.visitorUrl).searchParams.get('contact')!;
    bodies.push(await (await post('/api/demo/agent-session', { contactId: contact })).text());
    for (const body of bodies) for (const form of secretForms()) expect(body).not.toContain(form);
  });

  it('refuses cross-origin browsers and non-loopback Host names', async () => {
    const res = await post('/api/demo/visitor-session', {}, { origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(await res.text()).not.toContain('token');
    expect((await post('/api/demo/visitor-session', {}, { origin: web.url })).status).toBe(200);
    expect(await rawGet('/api/demo/contacts', 'attacker.example:80')).toBe(403);
    expect(await rawGet('/api/demo/contacts', `localhost:${web.port}`)).toBe(200);
  });
});

/** A reverse proxy on the same host (nginx's default `proxy_pass http://127.0.0.1:PORT`):
 * the web server sees a loopback peer and a loopback Host for every outside request. */
async function sameHostProxy(target: number): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const up = request(
      {
        host: '127.0.0.1',
        port: target,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: `127.0.0.1:${target}` },
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('demo backend behind a same-host proxy (attack)', () => {
  it('an outsider without the demo key lists no contacts and mints no token, whatever Host says', async () => {
    const proxy = await sameHostProxy(web.port);
    try {
      const contact = new URL(web.visitorUrl).searchParams.get('contact')!;
      // What an outsider sends through the proxy: no Origin (curl), no key.
      const list = await fetch(`${proxy.url}/api/demo/contacts`);
      expect(list.status).toBe(403);
      expect(await list.text()).not.toContain(contact);
      for (const path of [
        '/api/demo/agent-session',
        '/api/demo/visitor-session',
        `/api/demo/contacts/${contact}/close`,
      ]) {
        const res = await fetch(`${proxy.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ contactId: contact }),
        });
        expect(res.status, path).toBe(403);
        expect(await res.text(), path).not.toContain('token');
      }
      // A wrong key (same length) is refused too.
      const wrong = await fetch(`${proxy.url}/api/demo/agent-session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-latchkey-demo-key': 'A'.repeat(43) },
        body: JSON.stringify({ contactId: contact }),
      });
      expect(wrong.status).toBe(403);
      // The contact is still open: the close above was refused.
      expect((await post('/api/demo/agent-session', { contactId: contact })).status).toBe(200);
    } finally {
      await proxy.close();
    }
  });

  it('a forged loopback Host without the key is refused', async () => {
    expect(await rawGet('/api/demo/contacts', `localhost:${web.port}`, {})).toBe(403);
    expect(
      await rawGet('/api/demo/contacts', `127.0.0.1:${web.port}`, { 'x-latchkey-demo-key': '' }),
    ).toBe(403);
    expect(await rawGet('/api/demo/contacts', `127.0.0.1:${web.port}`)).toBe(200);
  });
});
