/**
 * Bring your own key (issue 6), end to end over real sockets, SQLite files and processes: the
 * chat flow against each key manager (internal; the reference KMS in a child process over HTTP;
 * SoftHSM2 over PKCS#11), an outage of the external key manager during a chat, rotation on a
 * kick without reconnecting, crypto-shredding (with a backup of the relay's database taken
 * before it), the key access log through `latchkey keys audit`, and `latchkey keys rewrap`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { fromBase64Url, toBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { openEnvelope } from '@latchkey/crypto/envelope';
import { cryptoHeader, type LatchkeyClient } from '@latchkey/client';
import type { KeyManagerChoice } from '@latchkey/keyd';
import { ADMIN_PATHS, LatchkeyError, type StoredEnvelope } from '@latchkey/protocol';
import {
  CLI,
  b64,
  dbFiles,
  filesContain,
  startByokStack,
  startKmsChild,
  type ByokStack,
} from './_byok.ts';
import { startFaultProxy } from '../../apps/kms-example/test/_fault-proxy.ts';
import { until } from './harness.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function latchkey(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Two participants chat; both see both messages, in order, and the history reads back. */
async function chatFlow(s: ByokStack, contact: string): Promise<void> {
  const v = await s.client(await s.token(contact, 'visitor-1', 'visitor'));
  const a = await s.client(await s.token(contact, 'agent-1', 'agent'));
  const seen: string[] = [];
  a.on('message', (m) => seen.push(m.text));
  await v.send('Hello, a question about my order');
  await a.send('Happy to help.');
  await until(() => seen.length === 2, 5000, 'both messages');
  expect(seen).toEqual(['Hello, a question about my order', 'Happy to help.']);
  const history = await v.history();
  expect(history.map((e) => (e.ok ? `${e.senderId}: ${e.text}` : e.code))).toEqual([
    'visitor-1: Hello, a question about my order',
    'agent-1: Happy to help.',
  ]);
  expect(v.fingerprint()).toBe(a.fingerprint());
}

/** The stored envelope at `seq` of a contact, read from the relay's database file. */
function storedEnvelope(dbPath: string, contactId: string, seq: number): StoredEnvelope {
  const db = new Database(dbPath, { readonly: true });
  try {
    const row = db
      .prepare<[string, number], { envelope: string }>(
        'SELECT envelope FROM messages WHERE contact_id = ? AND seq = ?',
      )
      .get(contactId, seq);
    if (!row) throw new Error(`no envelope ${contactId}/${seq}`);
    return { ...(JSON.parse(row.envelope) as Omit<StoredEnvelope, 'seq'>), seq } as StoredEnvelope;
  } finally {
    db.close();
  }
}

/** Tries to open a stored envelope with a raw key; returns the text or null. */
async function tryOpen(env: StoredEnvelope, key: Uint8Array): Promise<string | null> {
  const certBody = JSON.parse(utf8Decode(fromBase64Url(env.cert.body))) as { publicKey: string };
  const { nonce, ciphertext, sig } = env;
  try {
    const pt = await openEnvelope({
      key,
      header: cryptoHeader(env),
      nonce: fromBase64Url(nonce),
      ciphertext: fromBase64Url(ciphertext),
      sig: fromBase64Url(sig),
      verifyKey: fromBase64Url(certBody.publicKey),
    });
    return (JSON.parse(utf8Decode(pt)) as { text: string }).text;
  } catch {
    return null;
  }
}

const relayDb = (dir: string): string => join(dir, 'relay', 'messages.db');
const keysDb = (dir: string): string => join(dir, 'keys', 'keys.db');

describe('chat flow against each key manager', () => {
  it('internal', async () => {
    const s = await startByokStack({ kind: 'internal' });
    try {
      await chatFlow(s, 'flow-internal');
    } finally {
      await s.close();
    }
  });

  it('http: the reference KMS in a child process', async () => {
    const kmsDir = await mkdtemp(join(tmpdir(), 'latchkey-kms-'));
    const hmac = crypto.getRandomValues(new Uint8Array(32));
    const kms = await startKmsChild(kmsDir, hmac);
    const s = await startByokStack({
      kind: 'http',
      url: kms.url,
      secret: hmac,
      keyId: 'latchkey-kek',
    });
    try {
      await chatFlow(s, 'flow-http');
      // Only wrapped keys here: the raw content key is nowhere in Latchkey's key database.
      const raw = await s.rawKey(await s.token('flow-http', 'visitor-1'));
      expect(raw.status).toBe(200);
      expect(filesContain(dbFiles(keysDb(s.dir)), [b64(String(raw.json.key))])).toBe(false);
    } finally {
      await s.close();
      await kms.stop();
      await rm(kmsDir, { recursive: true, force: true });
    }
  });

  const LIBRARY = process.env.LATCHKEY_PKCS11_LIBRARY ?? '/usr/lib/softhsm/libsofthsm2.so';
  let missing: string | undefined;
  if (!existsSync(LIBRARY)) missing = `${LIBRARY} not found (Debian package softhsm2)`;
  else {
    try {
      execFileSync('softhsm2-util', ['--version'], { stdio: 'pipe' });
    } catch {
      missing = 'softhsm2-util not found (Debian package softhsm2)';
    }
  }
  if (missing !== undefined) {
    if (process.env.CI === 'true') {
      it('pkcs11: needs SoftHSM2 under CI', () => {
        throw new Error(`SoftHSM2 is required under CI: ${missing}`);
      });
    } else {
      console.warn(`skipping the PKCS#11 chat flow: ${missing}`);
      it.skip(`pkcs11: SoftHSM2 (${missing})`, () => undefined);
    }
  } else {
    it('pkcs11: SoftHSM2 with a token of its own', async () => {
      const tokenDir = await mkdtemp(join(tmpdir(), 'latchkey-softhsm-'));
      const conf = join(tokenDir, 'softhsm2.conf');
      writeFileSync(
        conf,
        `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`,
      );
      process.env.SOFTHSM2_CONF = conf;
      execFileSync(
        'softhsm2-util',
        ['--init-token', '--free', '--label', 'latchkey-it', '--so-pin', '1234', '--pin', '5678'],
        {
          stdio: 'pipe',
          env: { ...process.env, SOFTHSM2_CONF: conf },
        },
      );
      const s = await startByokStack({
        kind: 'pkcs11',
        module: LIBRARY,
        tokenLabel: 'latchkey-it',
        pin: '5678',
        createKey: true,
      });
      try {
        await chatFlow(s, 'flow-pkcs11');
      } finally {
        await s.close();
        await rm(tokenDir, { recursive: true, force: true });
      }
    });
  }
});

describe('external key manager down, slow or answering garbage during a chat', () => {
  it('clients get KEY_UNAVAILABLE, nothing is lost, and it all resumes when it is back', async () => {
    const kmsDir = await mkdtemp(join(tmpdir(), 'latchkey-kms-'));
    const hmac = crypto.getRandomValues(new Uint8Array(32));
    const kms = await startKmsChild(kmsDir, hmac);
    const proxy = await startFaultProxy(kms.url);
    proxy.slowMs = 1500;
    const choice: KeyManagerChoice = {
      kind: 'http',
      url: proxy.url,
      secret: hmac,
      timeoutMs: 300,
      retries: 0,
      breakerThreshold: 1000,
    };
    const s = await startByokStack(choice);
    try {
      const v = await s.client(await s.token('outage', 'visitor-1', 'visitor'));
      const a = await s.client(await s.token('outage', 'agent-1', 'agent'));
      const seen: string[] = [];
      a.on('message', (m) => seen.push(m.text));
      let n = 0;
      for (const mode of ['down', 'slow', 'garbage', 'bad-json', 'error500'] as const) {
        if (mode === 'down') await proxy.down();
        else proxy.mode = mode;
        // A participant that needs a key now gets KEY_UNAVAILABLE (typed), nothing else.
        const late = s.client(await s.token('outage', `agent-${mode}`, 'agent'));
        await expect(late).rejects.toSatisfy((e: unknown) =>
          LatchkeyError.is(e, 'KEY_UNAVAILABLE'),
        );
        const raw = await s.rawKey(await s.token('outage', 'visitor-1'));
        expect(raw.status).toBe(503);
        expect(raw.json).toEqual({
          error: { code: 'KEY_UNAVAILABLE', message: expect.any(String) },
        });
        // The chat goes on under the keys the members hold: nothing is lost.
        await v.send(`during ${mode}`);
        n++;
        await until(() => seen.length === n, 5000, `message during ${mode}`);
        if (mode === 'down') await proxy.up();
        proxy.mode = 'pass';
      }
      // Back: a new participant gets the key, reads everything, and sends.
      const b = await s.client(await s.token('outage', 'agent-2', 'agent'));
      const history = await b.history();
      expect(history.map((e) => (e.ok ? e.text : e.code))).toEqual([
        'during down',
        'during slow',
        'during garbage',
        'during bad-json',
        'during error500',
      ]);
      await b.send('back again');
      await until(() => seen.length === n + 1, 5000, 'message after recovery');
      // The access log says what happened: unavailable hand-outs, then granted again.
      const audit = await latchkey(['keys', 'audit', '--data', s.dir, '--json']);
      expect(audit.code).toBe(0);
      const outcomes = audit.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { outcome?: string; verified?: boolean });
      expect(outcomes.filter((o) => o.outcome === 'unavailable').length).toBeGreaterThanOrEqual(10);
      expect(outcomes.at(-1)).toMatchObject({ verified: true });
    } finally {
      await s.close();
      await proxy.close();
      await kms.stop();
      await rm(kmsDir, { recursive: true, force: true });
    }
  });
});

describe('rotation on a kick', () => {
  it('the kicked client cannot open what follows; members can, without reconnecting', async () => {
    const s = await startByokStack({ kind: 'internal' });
    try {
      const C = 'kick-1';
      const v = await s.client(await s.token(C, 'visitor-1', 'visitor'));
      const a1 = await s.client(await s.token(C, 'agent-1', 'agent'));
      const kickedToken = await s.token(C, 'agent-2', 'agent');
      const a2 = await s.client(kickedToken);
      const oldKey = await s.rawKey(kickedToken);
      expect(oldKey.json.epoch).toBe(0);
      const states: string[] = [];
      for (const c of [v, a1] as LatchkeyClient[]) c.on('state', (st) => states.push(st));
      const seen: { text: string; epoch: number }[] = [];
      a1.on('message', (m) => seen.push({ text: m.text, epoch: m.epoch }));
      await v.send('before the kick');
      await until(() => seen.length === 1);
      const fp0 = v.fingerprint();

      const r = await s.admin(ADMIN_PATHS.kick(C), { participantId: 'agent-2' });
      expect(r.keys).toMatchObject({ rotatedEpoch: 1 });
      await until(() => a2.state === 'closed', 5000, 'kicked client closed');
      // The rekey frame moves the members to epoch 1 on the same connection.
      await until(
        () => v.fingerprint() !== fp0 && a1.fingerprint() !== fp0,
        5000,
        'members on the new epoch',
      );
      await v.send('after the kick');
      await until(() => seen.length === 2);
      expect(seen[1]).toEqual({ text: 'after the kick', epoch: 1 });
      expect(states).toEqual([]); // no reconnect

      // The kicked participant: the new epoch is refused, and its old key opens nothing new.
      const refused = await s.rawKey(kickedToken, { epoch: 1 });
      expect(refused.status).toBe(403);
      const after = storedEnvelope(relayDb(s.dir), C, 2);
      expect(after.epoch).toBe(1);
      expect(await tryOpen(after, b64(String(oldKey.json.key)))).toBeNull();
      expect(
        await tryOpen(storedEnvelope(relayDb(s.dir), C, 1), b64(String(oldKey.json.key))),
      ).toBe('before the kick');
      // Old epochs stay readable to members.
      const history = await a1.history();
      expect(history.map((e) => (e.ok ? `${e.epoch}:${e.text}` : e.code))).toEqual([
        '0:before the kick',
        '1:after the kick',
      ]);
    } finally {
      await s.close();
    }
  });

  it('a member asks for a rotation after rotateAfterMessages; the others follow from the envelopes', async () => {
    const s = await startByokStack(
      { kind: 'internal' },
      { rotateAfterMessages: 3, minRotateAgeMs: 0 },
    );
    try {
      const C = 'rot-msgs';
      const v = await s.client(await s.token(C, 'visitor-1', 'visitor'));
      const a = await s.client(await s.token(C, 'agent-1', 'agent'));
      const seen: number[] = [];
      a.on('message', (m) => seen.push(m.epoch));
      for (let i = 0; i < 3; i++) await v.send(`m${i}`);
      await until(() => seen.length === 3);
      const fp0 = a.fingerprint();
      await until(() => v.fingerprint() !== fp0, 5000, 'rotation asked for');
      await v.send('m3');
      await until(() => seen.length === 4);
      expect(seen).toEqual([0, 0, 0, 1]);
      await until(() => a.fingerprint() === v.fingerprint(), 5000, 'agent follows');
      // Compare-and-set: asking again for epoch 0 does not rotate again.
      const again = await s.rawKey(await s.token(C, 'agent-1', 'agent'), {
        rotate: { ifEpoch: 0 },
      });
      expect(again.json).toMatchObject({ epoch: 1, currentEpoch: 1 });
      expect(again.json.rotated).toBeUndefined();
    } finally {
      await s.close();
    }
  });

  it('a requested rotation needs the epoch to be old enough, and the schedule rotates at the next fetch', async () => {
    const s = await startByokStack(
      { kind: 'internal' },
      { minRotateAgeMs: 60_000, rotateAfterMs: 400 },
    );
    try {
      const t = await s.token('rot-time', 'visitor-1', 'visitor');
      expect((await s.rawKey(t)).json.epoch).toBe(0);
      expect((await s.rawKey(t, { rotate: { ifEpoch: 0 } })).json).toMatchObject({
        currentEpoch: 0,
      });
      await new Promise((r) => setTimeout(r, 500));
      expect((await s.rawKey(t)).json).toMatchObject({ epoch: 1, currentEpoch: 1, rotated: true });
      expect((await s.rawKey(t)).json).toMatchObject({ epoch: 1 });
    } finally {
      await s.close();
    }
  });
});

describe('crypto-shredding and retention', () => {
  it('after `latchkey shred` nobody can open the contact, not even from a backup of the relay', async () => {
    const s = await startByokStack({ kind: 'internal' });
    try {
      const C = 'shred-1';
      const vt = await s.token(C, 'visitor-1', 'visitor');
      const v = await s.client(vt);
      const a = await s.client(await s.token(C, 'agent-1', 'agent'));
      for (const text of ['first secret', 'second secret', 'third secret']) await v.send(text);
      await until(() => a.lastSeq === 3);
      const key = b64(String((await s.rawKey(vt)).json.key));
      const kdb = new Database(keysDb(s.dir), { readonly: true });
      const wrapped = kdb
        .prepare<[string], { wrapped: Uint8Array }>(
          'SELECT wrapped FROM content_keys WHERE contact_id = ?',
        )
        .all(C)
        .map((r) => r.wrapped);
      kdb.close();
      expect(wrapped.length).toBe(1);
      const envelope = storedEnvelope(relayDb(s.dir), C, 1);
      expect(await tryOpen(envelope, key)).toBe('first secret');
      // A backup of the relay's database, taken before the shred.
      const backup = join(s.dir, 'relay-backup.db');
      const rdb = new Database(relayDb(s.dir), { readonly: true });
      await rdb.backup(backup);
      rdb.close();

      const env = { LATCHKEY_API_SECRET: toBase64Url(s.secret) };
      const r = await latchkey(
        ['shred', '--contact', C, '--relay', s.relayUrl, '--keys', s.keysUrl, '--data', s.dir],
        env,
      );
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(`shredded ${C} (keys destroyed, 3 messages deleted)`);
      await until(() => v.state === 'closed' && a.state === 'closed', 5000, 'connections ended');

      // No participant, old or new, gets any epoch; no client connects.
      for (const [p, role] of [
        ['visitor-1', 'visitor'],
        ['agent-1', 'agent'],
        ['agent-9', 'agent'],
      ] as const) {
        const t = await s.token(C, p, role);
        expect((await s.rawKey(t)).status).toBeGreaterThanOrEqual(400);
        expect((await s.rawKey(t, { epoch: 0 })).status).toBeGreaterThanOrEqual(400);
        await expect(s.client(t)).rejects.toBeInstanceOf(LatchkeyError);
      }
      // The backup still holds the ciphertext, but its key is gone: unreadable for ever.
      expect(storedEnvelope(backup, C, 1).ciphertext).toBe(envelope.ciphertext);
      // The relay's live database holds it no more; the key databases hold no trace of the key.
      expect(
        filesContain(dbFiles(relayDb(s.dir)), [new TextEncoder().encode(envelope.ciphertext)]),
      ).toBe(false);
      expect(
        filesContain(
          [...dbFiles(keysDb(s.dir)), ...dbFiles(join(s.dir, 'keys', 'access.db'))],
          [key, ...wrapped],
        ),
      ).toBe(false);
      const after = new Database(keysDb(s.dir), { readonly: true });
      expect(
        after.prepare('SELECT count(*) AS n FROM content_keys WHERE contact_id = ?').get(C),
      ).toEqual({ n: 0 });
      after.close();
      // Shredding again is harmless.
      const again = await latchkey(
        ['shred', '--contact', C, '--relay', s.relayUrl, '--keys', s.keysUrl, '--data', s.dir],
        env,
      );
      expect(again.stdout.trim()).toBe(`shredded ${C} (keys destroyed, 0 messages deleted)`);
    } finally {
      await s.close();
    }
  });

  it('retention: an expired contact loses its keys (key service sweep) and its ciphertext (relay)', async () => {
    const s = await startByokStack({ kind: 'internal' });
    try {
      const C = 'retain-1';
      const vt = await s.token(C, 'visitor-1', 'visitor');
      const v = await s.client(vt);
      await v.send('expires soon');
      const key = b64(String((await s.rawKey(vt)).json.key));
      await s.admin(ADMIN_PATHS.expiry(C), { expiresAt: Date.now() - 1 });
      expect(await s.sweepKeys()).toContain(C);
      await until(
        () => {
          const db = new Database(relayDb(s.dir), { readonly: true });
          const n = (
            db.prepare('SELECT count(*) AS n FROM messages WHERE contact_id = ?').get(C) as {
              n: number;
            }
          ).n;
          db.close();
          return n === 0;
        },
        5000,
        'ciphertext deleted',
      );
      expect(filesContain(dbFiles(keysDb(s.dir)), [key])).toBe(false);
      expect((await s.rawKey(vt)).status).toBe(410);
    } finally {
      await s.close();
    }
  });
});

describe('key access log and master-key rotation through the CLI', () => {
  it('records hand-outs and refusals; `keys audit` verifies the chain and catches tampering', async () => {
    const s = await startByokStack({ kind: 'internal' });
    try {
      const C = 'audit-1';
      const t = await s.token(C, 'visitor-1', 'visitor');
      await s.client(t);
      await s.admin(ADMIN_PATHS.kick(C), { participantId: 'agent-x' });
      expect((await s.rawKey(await s.token(C, 'agent-x', 'agent'))).status).toBe(403);
      const ok = await latchkey(['keys', 'audit', '--data', s.dir]);
      expect(ok.code).toBe(0);
      const lines = ok.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^1 \S+Z audit-1 epoch=0 visitor-1 granted$/);
      expect(lines).toContainEqual(expect.stringMatching(/ audit-1 epoch=0 agent-x denied$/));
      expect(lines.at(-1)).toMatch(/^verified: \d+ records, head \d+:[0-9a-f]{64}$/);

      const db = new Database(keysDb(s.dir));
      db.exec('DROP TRIGGER key_access_log_no_update');
      db.prepare(
        "UPDATE key_access_log SET outcome = 'granted' WHERE participant_id = 'agent-x'",
      ).run();
      db.close();
      const bad = await latchkey(['keys', 'audit', '--data', s.dir]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(
        /^error: TAMPERED key access log broken at record \d+: record altered or chain broken\n$/,
      );
    } finally {
      await s.close();
    }
  });

  it('`keys rewrap` re-wraps online; the old master key opens nothing, messages are untouched', async () => {
    const s = await startByokStack({ kind: 'internal' });
    try {
      const C = 'rewrap-1';
      const v = await s.client(await s.token(C, 'visitor-1', 'visitor'));
      await v.send('kept across the rewrap');
      const before = storedEnvelope(relayDb(s.dir), C, 1);
      const next = crypto.getRandomValues(new Uint8Array(32));
      const env = {
        LATCHKEY_API_SECRET: toBase64Url(s.secret),
        LATCHKEY_MASTER_KEY: toBase64Url(s.masterKey),
        LATCHKEY_NEW_MASTER_KEY: toBase64Url(next),
      };
      const r = await latchkey(
        ['keys', 'rewrap', '--data', s.dir, '--keys', s.keysUrl, '--relay', s.relayUrl],
        env,
      );
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/rewrapped \d+ content keys \(online\)/);
      const b = await s.client(await s.token(C, 'agent-1', 'agent'));
      expect((await b.history()).map((e) => (e.ok ? e.text : e.code))).toEqual([
        'kept across the rewrap',
      ]);
      expect(storedEnvelope(relayDb(s.dir), C, 1)).toEqual(before);
      // The store now answers only to the new master key.
      const { openInternalKeyManager } = await import('@latchkey/keys');
      await expect(
        openInternalKeyManager({ path: keysDb(s.dir), masterKey: s.masterKey }),
      ).rejects.toBeInstanceOf(LatchkeyError);
      const km = await openInternalKeyManager({ path: keysDb(s.dir), masterKey: next });
      expect(await km.currentEpoch(C)).toBe(0);
      await km.close();
    } finally {
      await s.close();
    }
  });
});

describe('an external key manager through the CLI (docs/key-management.md "Which calls each action makes")', () => {
  it('`keys rewrap` re-wraps in place at the key manager; `shred` sends it destroy with its reason', async () => {
    const kmsDir = await mkdtemp(join(tmpdir(), 'latchkey-kms-'));
    const hmac = crypto.getRandomValues(new Uint8Array(32));
    const kms = await startKmsChild(kmsDir, hmac);
    const s = await startByokStack({ kind: 'http', url: kms.url, secret: hmac, keyId: 'k1' });
    const audit = (): { operation: string; contact_id: string | null; reason: string | null }[] => {
      const db = new Database(join(kmsDir, 'kms.db'), { readonly: true });
      try {
        return db
          .prepare<[], { operation: string; contact_id: string | null; reason: string | null }>(
            'SELECT operation, contact_id, reason FROM audit ORDER BY rowid',
          )
          .all();
      } finally {
        db.close();
      }
    };
    try {
      const C = 'kms-cli-1';
      const v = await s.client(await s.token(C, 'visitor-1', 'visitor'));
      await v.send('kept across the rewrap');
      const env = { LATCHKEY_API_SECRET: toBase64Url(s.secret) };
      const cli = ['--data', s.dir, '--keys', s.keysUrl, '--relay', s.relayUrl];
      const r = await latchkey(['keys', 'rewrap', ...cli], env);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(
        'rewrapped 1 content keys (online, in place at the key manager)',
      );
      await until(
        () => audit().some((a) => a.operation === 'rewrap'),
        10_000,
        'the key manager logged the rewrap',
      );
      expect(audit().filter((a) => a.operation === 'rewrap')).toEqual([
        { operation: 'rewrap', contact_id: C, reason: 'rewrap' },
      ]);
      const b = await s.client(await s.token(C, 'agent-1', 'agent'));
      expect((await b.history()).map((e) => (e.ok ? e.text : e.code))).toEqual([
        'kept across the rewrap',
      ]);
      const sh = await latchkey(['shred', '--contact', C, ...cli], env);
      expect(sh.stderr).toBe('');
      await until(
        () => audit().some((a) => a.operation === 'destroy'),
        10_000,
        'the key manager heard of the shred',
      );
      expect(audit().filter((a) => a.operation === 'destroy')).toEqual([
        { operation: 'destroy', contact_id: C, reason: 'destroy' },
      ]);
    } finally {
      await s.close();
      await kms.stop();
      await rm(kmsDir, { recursive: true, force: true });
    }
  });
});
