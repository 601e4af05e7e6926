/**
 * `latchkey backup` / `restore` carry the relay's encrypted file blobs: a backup taken while a
 * relay runs holds every complete blob, listed in the manifest with contact, size and SHA-256,
 * and a snapshot that lists no blob it does not carry (unfinished uploads dropped); restore
 * refuses a blob altered or missing from the list, and a relay on the restored data directory
 * serves the files byte for byte. Real relay (apps/relay startRelay), real HTTP, real files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { FileLink, LatchkeyError, UploadState } from '@latchkey/protocol';
import { startRelay, type RunningRelay } from '@latchkey/relay-app';
import { mintToken } from '@latchkey/tokens';
import { BLOBS_DIR } from '../src/backup-blobs.ts';
import { backup, restore, type Manifest } from '../src/backup.ts';

const secret = new Uint8Array(randomBytes(32));
const relays: RunningRelay[] = [];
let root: string;

afterAll(async () => {
  for (const r of relays) await r.close();
  if (root) await rm(root, { recursive: true, force: true });
});

async function on(dataDir: string): Promise<string> {
  const r = await startRelay({ dataDir, host: '127.0.0.1', port: 0, apiSecret: secret });
  relays.push(r);
  return `http://127.0.0.1:${r.port}`;
}

async function headers(contactId: string, extra: Record<string, string> = {}) {
  const t = await mintToken(secret, {
    contactId,
    participantId: 'v1',
    role: 'visitor',
    ttlSeconds: 600,
  });
  return { authorization: `Bearer ${t}`, ...extra };
}

async function upload(base: string, contactId: string, data: Uint8Array, complete = true) {
  const res = await fetch(`${base}/v1/files`, {
    method: 'POST',
    headers: await headers(contactId, { 'content-type': 'application/json' }),
    body: JSON.stringify({ size: data.length }),
  });
  const { blob } = UploadState.parse(await res.json());
  const body = complete ? data : data.subarray(0, data.length / 2);
  const patched = await fetch(`${base}/v1/files/${blob}`, {
    method: 'PATCH',
    headers: await headers(contactId, {
      'content-type': 'application/offset+octet-stream',
      'upload-offset': '0',
    }),
    body: body as Uint8Array<ArrayBuffer>,
  });
  expect(patched.status).toBe(200);
  return blob;
}

async function download(base: string, contactId: string, blob: string): Promise<Buffer> {
  const res = await fetch(`${base}/v1/files/${blob}/link`, {
    method: 'POST',
    headers: await headers(contactId),
  });
  const link = FileLink.parse(await res.json());
  return Buffer.from(await (await fetch(`${base}${link.url}`)).arrayBuffer());
}

const hex = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');

describe('backup and restore of file blobs', () => {
  it('carries complete blobs, lists them, checks them, and a restored relay serves them', async () => {
    root = await mkdtemp(join(tmpdir(), 'latchkey-backup-blobs-'));
    const data = join(root, 'data');
    const base = await on(data);
    const a = new Uint8Array(randomBytes(70_000));
    const b = new Uint8Array(randomBytes(1_000));
    const blobA = await upload(base, 'c1', a);
    const blobB = await upload(base, 'c2', b);
    const unfinished = await upload(base, 'c1', new Uint8Array(randomBytes(500)), false);
    // A complete blob whose file is gone (as if shredded between the snapshot and the copy).
    const lost = await upload(base, 'c1', new Uint8Array(randomBytes(300)));
    await rm(join(data, BLOBS_DIR, lost));

    const out = join(root, 'backup');
    const lines: string[] = [];
    expect(await backup({ data, out }, (l) => lines.push(l))).toBe(0);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.blobs?.sort((x, y) => x.size - y.size)).toEqual([
      { blob: blobB, contactId: 'c2', size: b.length, sha256: hex(b) },
      { blob: blobA, contactId: 'c1', size: a.length, sha256: hex(a) },
    ]);
    expect((await readdir(join(out, BLOBS_DIR))).sort()).toEqual([blobA, blobB].sort());
    expect(lines).toContain(`${BLOBS_DIR}/${blobA} ${a.length} sha256=${hex(a)}`);
    const snap = new Database(join(out, 'relay/messages.db'), { readonly: true });
    const rows = snap.prepare('SELECT blob_id FROM blobs ORDER BY blob_id').all();
    snap.close();
    expect(rows).toEqual(
      [{ blob_id: blobA }, { blob_id: blobB }].sort((x, y) => (x.blob_id < y.blob_id ? -1 : 1)),
    );
    expect(rows).not.toContainEqual({ blob_id: unfinished });
    expect(rows).not.toContainEqual({ blob_id: lost });
    expect(lines.filter((l) => l.startsWith('warning: 1 file blob(s)'))).toHaveLength(1);
    // The manifest's own entry still matches the pruned snapshot.
    const db = manifest.files.find((f) => f.path === 'relay/messages.db');
    expect(db?.sha256).toBe(hex(readFileSync(join(out, 'relay/messages.db'))));

    // An altered blob, and a blob left out of the list: refused before anything is written.
    const altered = join(root, 'altered');
    cpSync(out, altered, { recursive: true });
    const file = join(altered, BLOBS_DIR, blobA);
    const bytes = readFileSync(file);
    bytes[100] = (bytes[100] ?? 0) ^ 1;
    writeFileSync(file, bytes);
    const target = join(root, 'restored');
    await expect(restore({ from: altered, data: target }, () => undefined)).rejects.toThrow(
      /does not match the manifest/,
    );
    const short = join(root, 'short');
    cpSync(out, short, { recursive: true });
    writeFileSync(
      join(short, 'manifest.json'),
      JSON.stringify({ ...manifest, blobs: manifest.blobs?.filter((x) => x.blob !== blobB) }),
    );
    const err = await restore({ from: short, data: target }, () => undefined).catch(
      (e: unknown) => e,
    );
    expect(LatchkeyError.is(err, 'BAD_REQUEST')).toBe(true);
    expect(await readdir(root)).not.toContain('restored');

    expect(await restore({ from: out, data: target }, () => undefined)).toBe(0);
    const restored = await on(target);
    expect(Buffer.compare(await download(restored, 'c1', blobA), Buffer.from(a))).toBe(0);
    expect(Buffer.compare(await download(restored, 'c2', blobB), Buffer.from(b))).toBe(0);
    const gone = await fetch(`${restored}/v1/files/${unfinished}/upload`, {
      headers: await headers('c1'),
    });
    expect(gone.status).toBe(404);
  }, 60_000);
});
