/**
 * Delivery over real sockets: a receiver in a child process verifies every call with the
 * published `standardwebhooks` package and with our helper; TLS failures and SSRF targets are
 * refused with clear errors in the endpoint's status.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_EVENT_TYPES } from '@latchkey/protocol';
import { deliver, WebhookOutbox, WebhookService, type EventData } from '../src/index.ts';
import { makePki } from './_pki.ts';
import { startReceiver, type Receiver } from './_receiver.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lk-webhooks-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LOOPBACK = { allowlist: ['127.0.0.1'] };

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out; last: ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const SAMPLE: { [T in (typeof WEBHOOK_EVENT_TYPES)[number]]: EventData<T> } = {
  'contact.opened': { contactId: 'c1', time: 1 },
  'contact.closed': { contactId: 'c1', time: 2 },
  'contact.expired': { contactId: 'c1', time: 3 },
  'contact.shredded': { contactId: 'c1', time: 4 },
  'participant.joined': { contactId: 'c1', participantId: 'a1', role: 'agent', time: 5 },
  'participant.left': { contactId: 'c1', participantId: 'a1', time: 6 },
  'participant.kicked': { contactId: 'c1', participantId: 'v1', time: 7 },
  'message.stored': { contactId: 'c1', seq: 1, senderId: 'v1', size: 412, time: 8 },
  'key.rotated': { contactId: 'c1', epoch: 1, time: 9 },
  'key.accessed': {
    ...{ contactId: 'c1', epoch: 1, participantId: 'v1', time: 10, outcome: 'granted' },
    chain: { seq: 1, hash: 'a'.repeat(64), prevHash: '0'.repeat(64), alg: 'hmac-sha256' },
  },
  'key.denied': {
    ...{ contactId: 'c1', epoch: 0, participantId: 'v2', time: 11, outcome: 'denied' },
    chain: { seq: 2, hash: 'b'.repeat(64), prevHash: 'a'.repeat(64), alg: 'hmac-sha256' },
  },
  'key.destroyed': {
    ...{ contactId: 'c1', epoch: 1, participantId: 'admin', time: 12, outcome: 'destroyed' },
    chain: { seq: 3, hash: 'c'.repeat(64), prevHash: 'b'.repeat(64), alg: 'hmac-sha256' },
  },
};

describe('delivery to a real receiver', () => {
  it('every event arrives and verifies; a replayed or re-timestamped request is refused; rotation keeps it verifying', async () => {
    const svc = new WebhookService({ outbox: { path: join(dir, 'real.db') }, delivery: LOOPBACK });
    let rx: Receiver | undefined;
    try {
      // The receiver needs the secret, the endpoint needs the receiver's URL: add, then update by
      // starting the receiver on a port chosen first.
      const probe = await startReceiver({ SECRETS: 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
      const port = probe.port;
      await probe.stop();
      const { endpoint, secret } = await svc.outbox.addEndpoint(
        { url: `http://127.0.0.1:${port}/hook` },
        Date.now(),
      );
      rx = await startReceiver({ SECRETS: secret, PORT: String(port) });
      for (const type of WEBHOOK_EVENT_TYPES) svc.emit(type, SAMPLE[type] as never);
      const got = await until(
        () => (rx as Receiver).received(),
        (r) => r.length >= WEBHOOK_EVENT_TYPES.length,
      );
      expect(got.map((g) => g.type)).toEqual([...WEBHOOK_EVENT_TYPES]);
      expect(new Set(got.map((g) => g.id)).size).toBe(WEBHOOK_EVENT_TYPES.length);
      const stored = got.find((g) => g.type === 'message.stored');
      expect(JSON.parse(stored?.body ?? '')).toEqual({
        type: 'message.stored',
        timestamp: expect.any(String),
        sequence: WEBHOOK_EVENT_TYPES.indexOf('message.stored') + 1,
        data: { contactId: 'c1', seq: 1, senderId: 'v1', size: 412, time: 8 },
      });

      // Played again as captured: the signature is fine, but our helper refuses the seen id.
      const first = got[0] as (typeof got)[number];
      const replay = await fetch(rx.url, {
        method: 'POST',
        headers: first.headers,
        body: first.body,
      });
      expect(replay.status).toBe(409);
      expect(await replay.text()).toBe('latchkey: REPLAYED');
      // Re-timestamped to look fresh: the signature covers the timestamp, so both refuse it.
      const retimed = {
        ...first.headers,
        'webhook-timestamp': String(Number(first.headers['webhook-timestamp']) + 7),
      };
      const r2 = await fetch(rx.url, { method: 'POST', headers: retimed, body: first.body });
      expect(r2.status).toBe(400);
      // A forged body under a captured signature.
      const r3 = await fetch(rx.url, {
        method: 'POST',
        headers: { ...first.headers, 'webhook-id': 'evt_forged0001' },
        body: first.body,
      });
      expect(r3.status).toBe(400);

      // Secret rotation: the receiver still knows only the old secret; during the overlap every
      // call carries two signatures, so it keeps verifying.
      const rotated = await svc.outbox.rotateSecret(endpoint.id, Date.now(), 60_000);
      expect(rotated.endpoint.secrets).toBe(2);
      svc.emit('contact.closed', { contactId: 'c2', time: 10 });
      const after = await until(
        () => (rx as Receiver).received(),
        (r) => r.length > WEBHOOK_EVENT_TYPES.length,
      );
      const last = after[after.length - 1];
      expect(last?.type).toBe('contact.closed');
      expect((last?.headers['webhook-signature'] ?? '').split(' ')).toHaveLength(2);

      const test = await svc.test(endpoint.id);
      expect(test).toEqual({ ok: true, status: 204, error: null });
      expect((await svc.endpoint(endpoint.id))?.status).toMatchObject({
        pending: 0,
        dead: 0,
        lastError: null,
      });
    } finally {
      await rx?.stop();
      await svc.close();
    }
  });

  it('receiver down for a while, then back, across a restart: everything arrives once per event id, in order', async () => {
    const path = join(dir, 'down.db');
    const retry = { baseMs: 50, maxDelayMs: 200, maxAgeMs: 3_600_000 };
    const probe = await startReceiver({ SECRETS: 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    const port = probe.port;
    await probe.stop();
    let svc = new WebhookService({ outbox: { path, retry }, delivery: LOOPBACK });
    const { endpoint, secret } = await svc.outbox.addEndpoint(
      { url: `http://127.0.0.1:${port}/hook` },
      Date.now(),
    );
    const ids: string[] = [];
    for (let seq = 1; seq <= 6; seq++)
      ids.push(
        svc.emit('message.stored', { contactId: 'c9', seq, senderId: 'v', size: 10, time: seq }) ??
          '',
      );
    await until(
      async () => (await svc.endpoint(endpoint.id))?.status,
      (s) => (s?.lastError?.code ?? '') === 'CONNECT_FAILED',
    );
    expect((await svc.endpoint(endpoint.id))?.status.pending).toBe(6);
    // The relay restarts while the receiver is down.
    await svc.close();
    svc = new WebhookService({ outbox: { path, retry }, delivery: LOOPBACK });
    for (let seq = 7; seq <= 8; seq++)
      ids.push(
        svc.emit('message.stored', { contactId: 'c9', seq, senderId: 'v', size: 10, time: seq }) ??
          '',
      );
    const rx = await startReceiver({ SECRETS: secret, PORT: String(port) });
    try {
      const got = await until(
        () => rx.received(),
        (r) => r.length >= 8,
      );
      await new Promise((r) => setTimeout(r, 300)); // nothing more comes
      const final = await rx.received();
      expect(final.map((g) => g.id)).toEqual(ids);
      expect(final.map((g) => (JSON.parse(g.body) as { data: { seq: number } }).data.seq)).toEqual([
        1, 2, 3, 4, 5, 6, 7, 8,
      ]);
      expect(got.length).toBe(8);
      expect((await svc.endpoint(endpoint.id))?.status).toMatchObject({
        pending: 0,
        delivered: 8,
        dead: 0,
        lastError: null,
      });
    } finally {
      await rx.stop();
      await svc.close();
    }
  });
});

describe('safe delivery', () => {
  let pki: ReturnType<typeof makePki>;
  let ca: string;
  beforeAll(() => {
    pki = makePki(dir);
    ca = readFileSync(pki.caFile, 'utf8');
  });

  async function tlsCase(
    name: string,
    san: string,
    fromDays: number,
    toDays: number,
    trust = true,
  ) {
    const { certFile, keyFile } = pki.issue(name, { san, fromDays, toDays });
    const rx = await startReceiver({
      SECRETS: 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      TLS_CERT: certFile,
      TLS_KEY: keyFile,
    });
    try {
      const svc = new WebhookService({
        outbox: new WebhookOutbox({ path: join(dir, `${name}.db`) }),
        delivery: { ...LOOPBACK, ...(trust ? { ca } : {}) },
        autoStart: false,
      });
      const { endpoint } = await svc.outbox.addEndpoint({ url: rx.url }, Date.now());
      const r = await svc.test(endpoint.id);
      const status = (await svc.endpoint(endpoint.id))?.status;
      svc.outbox.close();
      await svc.close();
      return { r, status };
    } finally {
      await rx.stop();
    }
  }

  it('a certificate from a trusted CA for the right name is accepted (the signature then fails: other secret)', async () => {
    const { r } = await tlsCase('good', 'IP:127.0.0.1', -1, 1);
    expect(r).toMatchObject({ ok: false, status: 400, error: { code: 'HTTP_STATUS' } });
  });

  it.each([
    [
      'mismatch',
      'DNS:other.example',
      -1,
      1,
      true,
      'TLS_NAME_MISMATCH',
      /does not match the host name/,
    ],
    ['expired', 'IP:127.0.0.1', -3, -1, true, 'TLS_EXPIRED', /expired/],
    ['future', 'IP:127.0.0.1', 1, 3, true, 'TLS_NOT_YET_VALID', /not yet valid/],
    ['untrusted', 'IP:127.0.0.1', -1, 1, false, 'TLS_UNTRUSTED', /untrusted chain/],
  ] as const)('%s certificate: %s', async (name, san, from, to, trust, code, message) => {
    const { r, status } = await tlsCase(name, san, from, to, trust);
    expect(r).toMatchObject({
      ok: false,
      status: null,
      error: { code, message: expect.stringMatching(message) },
    });
    expect(status?.lastError).toMatchObject({ code, message: expect.stringMatching(message) });
  });

  it.each([
    ['http://10.0.0.1/hook', 'ADDRESS_REFUSED', /10\.0\.0\.1, a private/],
    ['https://169.254.169.254/latest', 'ADDRESS_REFUSED', /169\.254\.169\.254, a private/],
    ['https://[::1]:9/hook', 'ADDRESS_REFUSED', /::1, a loopback/],
    ['http://[::ffff:127.0.0.1]:9/hook', 'ADDRESS_REFUSED', /127\.0\.0\.1, a loopback/],
    [
      'http://localhost:9/hook',
      'ADDRESS_REFUSED',
      /localhost resolves to (127\.0\.0\.1|::1), a loopback/,
    ],
    ['http://203.0.113.9/hook', 'ADDRESS_REFUSED', /special-purpose/],
    ['http://8.8.8.8/hook', 'HTTPS_REQUIRED', /https is required/],
    ['ftp://example.com/', 'BAD_URL', /http/],
    ['https://user:pw@example.com/', 'BAD_URL', /credentials/],
  ])('refuses %s without connecting', async (url, code, message) => {
    const r = await deliver(url, {}, '{}', { timeoutMs: 1000 });
    expect(r).toMatchObject({ ok: false, code, message: expect.stringMatching(message) });
  });

  it('a name that resolves to loopback is refused unless allowlisted, and every answer counts (rebinding)', async () => {
    const svc = new WebhookService({ outbox: { path: join(dir, 'ssrf.db') }, autoStart: false });
    const { endpoint } = await svc.outbox.addEndpoint(
      { url: 'http://localhost:9/hook' },
      Date.now(),
    );
    const r = await svc.test(endpoint.id);
    expect(r.error).toMatchObject({ code: 'ADDRESS_REFUSED' });
    expect((await svc.endpoint(endpoint.id))?.status.lastError?.message).toMatch(
      /localhost resolves to/,
    );
    await svc.close();
    const mixed = await deliver('https://hooks.example/x', {}, '{}', {
      resolve: async () => [
        { address: '93.184.216.34', family: 4 },
        { address: '10.1.1.1', family: 4 },
      ],
    });
    expect(mixed).toMatchObject({ ok: false, code: 'ADDRESS_REFUSED' });
  });

  describe('against a local server', () => {
    let server: Server;
    let base: string;
    beforeAll(async () => {
      server = createServer((req, res) => {
        if (req.url === '/redirect') res.writeHead(302, { location: 'http://10.0.0.1/' }).end();
        else if (req.url === '/slow') setTimeout(() => res.writeHead(204).end(), 3000);
        else if (req.url === '/big') {
          res.writeHead(200);
          const chunk = Buffer.alloc(64 * 1024, 120);
          let n = 0;
          const write = (): void => {
            while (n++ < 200) if (!res.write(chunk)) return void res.once('drain', write);
            res.end();
          };
          write();
        } else res.writeHead(500).end('no');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const a = server.address();
      base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it('does not follow redirects', async () => {
      expect(await deliver(`${base}/redirect`, {}, '{}', LOOPBACK)).toMatchObject({
        ok: false,
        status: 302,
        code: 'REDIRECT',
      });
    });
    it('bounds the time', async () => {
      const t0 = Date.now();
      expect(
        await deliver(`${base}/slow`, {}, '{}', { ...LOOPBACK, timeoutMs: 200 }),
      ).toMatchObject({ ok: false, code: 'TIMEOUT' });
      expect(Date.now() - t0).toBeLessThan(2000);
    });
    it('bounds the response size (reads at most maxResponseBytes)', async () => {
      expect(
        await deliver(`${base}/big`, {}, '{}', { ...LOOPBACK, maxResponseBytes: 1024 }),
      ).toEqual({ ok: true, status: 200 });
    });
    it('names HTTP failures', async () => {
      expect(await deliver(`${base}/err`, {}, '{}', LOOPBACK)).toMatchObject({
        ok: false,
        status: 500,
        code: 'HTTP_STATUS',
      });
    });
  });
});
