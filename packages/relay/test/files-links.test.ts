/**
 * Capability links and the lifecycle of the relay's blobs, over real HTTP on 127.0.0.1 and a
 * real SQLite file and blob directory: a member's link works (any active member, supervisor
 * included), expired, forged, altered and swapped links are refused, a kicked participant's
 * existing link stops working at once, links only for complete blobs of the token's contact;
 * shredding a contact (admin) and its expiry (sweep) delete its blobs from disk and their rows,
 * the sweep removes stale unfinished uploads; CORS preflights and headers; hostile inputs.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FileLink } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import { capabilityKey, signCapability } from '../src/files/capability.ts';
import { Caller, errorCode, randomData, fileRelays, type startFileRelay } from './_files.ts';
import { SECRET } from './_helpers.ts';

const start = fileRelays();

const blobRows = (db: string): number => {
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare('SELECT count(*) AS n FROM blobs').get() as { n: number }).n;
  } finally {
    d.close();
  }
};

/** A relay, a visitor and an agent of contact c1, and one complete 5,000-byte blob. */
async function withBlob(over: Parameters<typeof startFileRelay>[0] = {}) {
  const r = await start(over);
  const v = new Caller(r.http, 'c1', 'v1');
  const a = new Caller(r.http, 'c1', 'a1', 'agent');
  const data = randomData(5000);
  const blob = await v.upload(data);
  await a.newBlob(100); // admits the agent
  return { r, v, a, data, blob };
}

describe('links', () => {
  it('serve any active member of the contact, for complete blobs of its own contact only', async () => {
    const { r, v, a, data, blob } = await withBlob();
    const res = await a.link(blob);
    expect(res.status).toBe(200);
    const link = FileLink.parse(await res.json());
    expect(link.size).toBe(data.length);
    expect(link.url.startsWith(`/v1/files/${blob}?cap=`)).toBe(true);
    expect(link.expiresAt).toBeGreaterThan(Date.now());
    expect(link.expiresAt).toBeLessThanOrEqual(Date.now() + 301_000);
    const got = await fetch(`${r.http}${link.url}`);
    expect(Buffer.from(await got.arrayBuffer())).toEqual(Buffer.from(data));
    // A supervisor reads, as do scanners to come (any active member).
    await r.relay.contacts.invite('c1', 's1', 'supervisor', Date.now(), {
      maxParticipants: 10,
      contactTtlMs: 86_400_000,
    });
    expect((await new Caller(r.http, 'c1', 's1', 'supervisor').link(blob)).status).toBe(200);
    // Incomplete: no link.
    const open = await v.newBlob(100);
    const early = await v.link(open);
    expect(early.status).toBe(409);
    expect(await errorCode(early)).toBe('CONFLICT');
    // Another contact's token: as if the blob did not exist.
    const other = new Caller(r.http, 'c2', 'v9');
    await other.newBlob(100);
    expect((await other.link(blob)).status).toBe(404);
    // No token.
    const anon = await fetch(`${r.http}/v1/files/${blob}/link`, { method: 'POST' });
    expect(anon.status).toBe(401);
    expect(await errorCode(anon)).toBe('AUTH_REQUIRED');
  });

  it('refuse expired, forged, altered and swapped capabilities', async () => {
    const { r, v, blob } = await withBlob();
    const url = await v.linkUrl(blob);
    const cap = new URL(url).searchParams.get('cap') as string;
    const [claims = '', tag = ''] = cap.split('.');
    const key = capabilityKey(SECRET);
    const at = (c: string, b = blob) => fetch(`${r.http}/v1/files/${b}?cap=${c}`);
    const expired = signCapability(key, {
      b: blob,
      c: 'c1',
      p: 'v1',
      e: Math.floor(Date.now() / 1000) - 1,
    });
    const e = await at(expired);
    expect(e.status).toBe(401);
    expect(await errorCode(e)).toBe('AUTH_EXPIRED');
    // Signed with another secret (another deployment), or with the API secret's other keys.
    const foreign = signCapability(capabilityKey(new Uint8Array(32).fill(7)), {
      b: blob,
      c: 'c1',
      p: 'v1',
      e: Math.floor(Date.now() / 1000) + 60,
    });
    const flip = (s: string, i: number) =>
      s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const longer = Buffer.from(
      JSON.stringify({ b: blob, c: 'c1', p: 'v1', e: 9_999_999_999 }),
    ).toString('base64url');
    for (const bad of [
      foreign,
      `${claims}.${flip(tag, 5)}`,
      `${flip(claims, 3)}.${tag}`,
      `${longer}.${tag}`,
      `${claims}.`,
      claims,
      '',
      `${claims}.${tag}x`,
    ]) {
      const res = await at(bad);
      expect(res.status, bad).toBe(403);
      expect(await errorCode(res)).toBe('FORBIDDEN');
    }
    // A valid capability of one blob does not open another.
    const second = await v.upload(randomData(100));
    expect((await at(cap, second)).status).toBe(403);
    // Two caps, none: refused.
    expect((await fetch(`${url}&cap=${cap}`)).status).toBe(403);
    expect((await fetch(`${r.http}/v1/files/${blob}`)).status).toBe(403);
    expect((await fetch(url)).status).toBe(200);
  });

  it("stop working at once for a kicked or departed participant's existing links", async () => {
    const { r, v, a, blob } = await withBlob();
    const agents = await a.linkUrl(blob);
    const visitors = await v.linkUrl(blob);
    expect((await fetch(agents)).status).toBe(200);
    await r.relay.contacts.kick('c1', 'a1', Date.now());
    const kicked = await fetch(agents);
    expect(kicked.status).toBe(403);
    expect(await errorCode(kicked)).toBe('FORBIDDEN');
    expect((await a.link(blob)).status).toBe(403);
    expect((await fetch(visitors)).status).toBe(200);
    await r.relay.contacts.transfer('c1', 'a2', 'a3', Date.now());
    expect((await fetch(visitors)).status).toBe(200);
  });
});

describe('lifecycle', () => {
  it('shredding a contact deletes its blobs from disk and their rows, and only its own', async () => {
    const { r, v, blob } = await withBlob();
    const open = await v.newBlob(1000);
    expect((await v.patch(open, 0, randomData(10))).status).toBe(200);
    const other = await new Caller(r.http, 'c2', 'v1').upload(randomData(100));
    const url = await v.linkUrl(blob);
    expect(existsSync(join(r.blobs, blob))).toBe(true);
    const res = await fetch(`${r.http}/admin/v1/contacts/c1/shred`, {
      method: 'POST',
      headers: {
        authorization: adminAuthorization(deriveAdminKey(SECRET)),
        'content-type': 'application/json',
      },
      body: '{}',
    });
    expect(res.status).toBe(200);
    expect(await readdir(r.blobs)).toEqual([other]);
    expect(blobRows(r.db)).toBe(1);
    expect((await fetch(url)).status).toBe(410);
  });

  it('expiry deletes the blobs (default retention); the sweep removes stale unfinished uploads', async () => {
    const { r } = await withBlob({ files: { incompleteTtlSeconds: 60 } });
    const c2 = new Caller(r.http, 'c2', 'v1');
    const stale = await c2.newBlob(1000);
    expect((await c2.patch(stale, 0, randomData(10))).status).toBe(200);
    const kept = await c2.upload(randomData(100));
    // The admin API's expiry change runs the sweep: retention deletes c1's ciphertext and blobs.
    const res = await fetch(`${r.http}/admin/v1/contacts/c1/expiry`, {
      method: 'POST',
      headers: {
        authorization: adminAuthorization(deriveAdminKey(SECRET)),
        'content-type': 'application/json',
      },
      body: JSON.stringify({ expiresAt: Date.now() - 1 }),
    });
    expect(res.status).toBe(200);
    expect((await readdir(r.blobs)).sort()).toEqual([kept, stale].sort());
    expect(blobRows(r.db)).toBe(2);
    // A minute later the unfinished upload is stale: gone with its row.
    expect(await r.relay.files?.sweep(Date.now() + 61_000)).toBe(1);
    expect(await readdir(r.blobs)).toEqual([kept]);
    expect(blobRows(r.db)).toBe(1);
    expect((await c2.state(stale)).status).toBe(404);
  });
});
