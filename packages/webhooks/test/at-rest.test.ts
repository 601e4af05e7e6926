/**
 * Endpoint secrets at rest (issue 13 point 10): the outbox file holds them sealed (AES-256-GCM
 * under the outbox key, `<database>.key` beside the database, or one the owner passes), the
 * database, its -wal/-shm and the key file are 0600, deliveries still sign with the real secret,
 * and an outbox written before (plaintext secrets, 0644) is sealed and tightened on open.
 */
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createWebhookVerifier,
  WebhookOutbox,
  WebhookService,
  type DeliveryResult,
} from '../src/index.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lk-at-rest-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Every file of the database (main, -wal, -shm) that exists, as bytes. */
function dbBytes(path: string): Buffer {
  return Buffer.concat(
    [path, `${path}-wal`, `${path}-shm`].filter((p) => existsSync(p)).map((p) => readFileSync(p)),
  );
}

/** The secret in the forms it could sit in a file: `whsec_...`, its base64 part, its raw bytes. */
function forms(secret: string): Buffer[] {
  const b64 = secret.slice('whsec_'.length);
  return [Buffer.from(secret), Buffer.from(b64), Buffer.from(b64, 'base64')];
}

function expectNoSecret(path: string, secret: string): void {
  const bytes = dbBytes(path);
  for (const f of forms(secret)) expect(bytes.includes(f), `secret found in ${path}`).toBe(false);
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

function expectPrivate(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`])
    if (existsSync(p)) expect(mode(p).toString(8), p).toBe('600');
}

describe('webhook secrets at rest', () => {
  it('the database holds no secret, its files and key are 0600, and deliveries still verify', async () => {
    const path = join(dir, 'webhooks.db');
    const calls: { headers: Record<string, string>; body: string }[] = [];
    const send = async (
      _url: string,
      headers: Record<string, string>,
      body: string,
    ): Promise<DeliveryResult> => {
      calls.push({ headers, body });
      return { ok: true, status: 204 };
    };
    const svc = new WebhookService({ outbox: { path }, autoStart: false, send });
    const { endpoint, secret } = await svc.outbox.addEndpoint(
      { url: 'https://crm.example/hook' },
      Date.now(),
    );
    const { secret: rotated } = await svc.outbox.rotateSecret(endpoint.id, Date.now(), 60_000);
    svc.emit('contact.opened', { contactId: 'c1', time: 1 });
    await svc.runDue();
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    // Both secrets sign during the overlap; each alone verifies.
    for (const s of [secret, rotated]) {
      expect(createWebhookVerifier(s).verify(call.body, call.headers)).toMatchObject({
        type: 'contact.opened',
      });
    }
    expect((await svc.test(endpoint.id)).ok).toBe(true);
    // While open (WAL and SHM present) and after closing.
    expectNoSecret(path, secret);
    expectNoSecret(path, rotated);
    expectPrivate(path);
    await svc.close();
    expectNoSecret(path, secret);
    expectNoSecret(path, rotated);
    expectPrivate(path);
    expect(mode(join(dir, 'webhooks.db.key')).toString(8)).toBe('600');

    // Reopened: the same secrets sign.
    const again = new WebhookOutbox({ path });
    expect(await again.secrets(endpoint.id, Date.now())).toEqual([secret, rotated]);
    again.close();
  });

  it('a removed endpoint leaves no trace of its secret in the file', async () => {
    const path = join(dir, 'gone.db');
    const o = new WebhookOutbox({ path });
    const { endpoint, secret } = await o.addEndpoint({ url: 'https://crm.example/hook' }, 0);
    o.removeEndpoint(endpoint.id);
    o.close();
    expectNoSecret(path, secret);
  });

  it('an owner-given key works; the wrong key cannot open the secrets', async () => {
    const path = join(dir, 'owned.db');
    const key = crypto.getRandomValues(new Uint8Array(32));
    const o = new WebhookOutbox({ path, secretKey: key });
    const { endpoint, secret } = await o.addEndpoint({ url: 'https://crm.example/hook' }, 0);
    o.close();
    expect(existsSync(join(dir, 'owned.db.key'))).toBe(false);
    expectNoSecret(path, secret);
    const same = new WebhookOutbox({ path, secretKey: key });
    expect(await same.secrets(endpoint.id, 0)).toEqual([secret]);
    same.close();
    const wrong = new WebhookOutbox({ path, secretKey: new Uint8Array(32) });
    await expect(wrong.secrets(endpoint.id, 0)).rejects.toThrow(/cannot be opened/);
    wrong.close();
    expect(() => new WebhookOutbox({ path, secretKey: new Uint8Array(16) })).toThrow(RangeError);
  });

  it('an outbox written with plaintext secrets in a 0644 file is sealed and made 0600 on open', async () => {
    const path = join(dir, 'webhooks.db');
    const secret =
      'whsec_' + Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64');
    const oldSecret =
      'whsec_' + Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64');
    const far = Date.now() + 3_600_000;
    // The version 1 layout, as the outbox wrote it before secrets were sealed.
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec(`
      CREATE TABLE webhook_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
      CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT, description TEXT,
        created_at INTEGER NOT NULL, secrets TEXT NOT NULL,
        last_attempt_at INTEGER, last_success_at INTEGER, last_error TEXT
      );
      CREATE TABLE webhook_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        payload TEXT NOT NULL, created_at INTEGER NOT NULL
      );
      CREATE TABLE webhook_deliveries (
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        event_seq INTEGER NOT NULL REFERENCES webhook_events(seq),
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0, first_at INTEGER NOT NULL, next_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, last_error TEXT,
        PRIMARY KEY (endpoint_id, event_seq)
      ) WITHOUT ROWID;
      CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, endpoint_id, event_seq);
      INSERT INTO webhook_schema (name, version) VALUES ('outbox', 1);
    `);
    db.prepare(
      'INSERT INTO webhook_endpoints (id, url, events, description, created_at, secrets) VALUES (?, ?, NULL, NULL, 1, ?)',
    ).run(
      'ep_legacy0000000000000000',
      'https://crm.example/hook',
      JSON.stringify([
        { secret: oldSecret, expiresAt: far },
        { secret, expiresAt: null },
      ]),
    );
    db.prepare(
      "INSERT INTO webhook_events (id, type, payload, created_at) VALUES ('evt_legacy', 'contact.opened', ?, 1)",
    ).run(
      JSON.stringify({
        type: 'contact.opened',
        timestamp: new Date(1).toISOString(),
        data: { contactId: 'c1', time: 1 },
      }),
    );
    db.prepare(
      "INSERT INTO webhook_deliveries (endpoint_id, event_seq, state, attempts, first_at, next_at, updated_at) VALUES ('ep_legacy0000000000000000', 1, 'pending', 0, 1, 1, 1)",
    ).run();
    db.close();
    chmodSync(path, 0o644);
    expect(readFileSync(path).includes(Buffer.from(secret))).toBe(true);

    const calls: { headers: Record<string, string>; body: string }[] = [];
    const send = async (
      _url: string,
      headers: Record<string, string>,
      body: string,
    ): Promise<DeliveryResult> => {
      calls.push({ headers, body });
      return { ok: true, status: 204 };
    };
    const svc = new WebhookService({ outbox: { path }, autoStart: false, send });
    expectPrivate(path);
    await svc.runDue();
    expect(calls).toHaveLength(1);
    // Queued before sequence numbers existed: numbered on open, in event order.
    expect(JSON.parse(calls[0]!.body)).toMatchObject({ type: 'contact.opened', sequence: 1 });
    for (const s of [secret, oldSecret])
      expect(createWebhookVerifier(s).verify(calls[0]!.body, calls[0]!.headers)).toMatchObject({
        type: 'contact.opened',
      });
    expect(await svc.outbox.secrets('ep_legacy0000000000000000', Date.now())).toEqual([
      oldSecret,
      secret,
    ]);
    expectNoSecret(path, secret);
    expectNoSecret(path, oldSecret);
    await svc.close();
    expectNoSecret(path, secret);
    expectNoSecret(path, oldSecret);
    expectPrivate(path);
  });

  it('a key file that others can read is refused', async () => {
    const path = join(dir, 'loose.db');
    writeFileSync(join(dir, 'loose.db.key'), Buffer.alloc(32, 7), { mode: 0o644 });
    chmodSync(join(dir, 'loose.db.key'), 0o644);
    expect(() => new WebhookOutbox({ path })).toThrow(/webhook outbox cannot be opened/);
  });
});
