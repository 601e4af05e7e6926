/**
 * Crash safety of the relay's file store with a real relay process (apps/relay, SIGKILL) over
 * a real data directory: a completed upload survives the kill byte for byte; an upload killed
 * mid-body resumes after the restart from the offset the relay recorded, and the file read
 * back is exactly what was sent (nothing past the recorded offset is kept).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileLink, UploadState } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { freePort, spawnRelay, stopRelay, type RelayProcess } from './relay-process.ts';

const secret = new Uint8Array(randomBytes(32));
let dir: string | undefined;
let proc: RelayProcess | undefined;

afterEach(async () => {
  await stopRelay(proc);
  proc = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function auth(participantId = 'v1'): Promise<Record<string, string>> {
  const t = await mintToken(secret, {
    contactId: 'c1',
    participantId,
    role: 'visitor',
    ttlSeconds: 600,
  });
  return { authorization: `Bearer ${t}` };
}

async function state(base: string, blob: string): Promise<UploadState> {
  return UploadState.parse(
    await (await fetch(`${base}/v1/files/${blob}/upload`, { headers: await auth() })).json(),
  );
}

async function patch(base: string, blob: string, offset: number, body: Uint8Array) {
  return fetch(`${base}/v1/files/${blob}`, {
    method: 'PATCH',
    headers: {
      ...(await auth()),
      'content-type': 'application/offset+octet-stream',
      'upload-offset': String(offset),
    },
    body: body as Uint8Array<ArrayBuffer>,
  });
}

async function read(base: string, blob: string): Promise<Buffer> {
  const res = await fetch(`${base}/v1/files/${blob}/link`, {
    method: 'POST',
    headers: await auth(),
  });
  const link = FileLink.parse(await res.json());
  return Buffer.from(await (await fetch(`${base}${link.url}`)).arrayBuffer());
}

describe('files across a relay crash', () => {
  it('keeps a completed upload, and resumes one killed mid-body', async () => {
    dir = await mkdtemp(join(tmpdir(), 'latchkey-files-crash-'));
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    proc = await spawnRelay({ dataDir: dir, port, secret });
    const done = new Uint8Array(randomBytes(300_000));
    const created = await fetch(`${base}/v1/files`, {
      method: 'POST',
      headers: { ...(await auth()), 'content-type': 'application/json' },
      body: JSON.stringify({ size: done.length }),
    });
    const blob = UploadState.parse(await created.json()).blob;
    expect((await patch(base, blob, 0, done)).status).toBe(200);

    const big = new Uint8Array(randomBytes(4_000_000));
    const second = await fetch(`${base}/v1/files`, {
      method: 'POST',
      headers: { ...(await auth()), 'content-type': 'application/json' },
      body: JSON.stringify({ size: big.length }),
    });
    const open = UploadState.parse(await second.json()).blob;
    // One PATCH of the first 2 MB, killed with the relay while its body streams.
    const req = request(`${base}/v1/files/${open}`, {
      method: 'PATCH',
      headers: {
        ...(await auth()),
        'content-type': 'application/offset+octet-stream',
        'upload-offset': '0',
        'content-length': '2000000',
      },
    });
    req.on('error', () => undefined);
    req.write(big.subarray(0, 1_000_000));
    await new Promise<void>((r) => req.write(big.subarray(1_000_000, 1_500_000), () => r()));
    await stopRelay(proc, 'SIGKILL');
    req.destroy();

    proc = await spawnRelay({ dataDir: dir, port, secret });
    expect(await state(base, blob)).toMatchObject({ offset: done.length, complete: true });
    expect(Buffer.compare(await read(base, blob), Buffer.from(done))).toBe(0);
    // Whatever the killed request got recorded (maybe nothing), the upload resumes from there.
    const at = await state(base, open);
    expect(at.complete).toBe(false);
    expect(at.offset).toBeLessThanOrEqual(1_500_000);
    for (let offset = at.offset; offset < big.length;) {
      const piece = big.subarray(offset, offset + 1_500_000);
      const res = await patch(base, open, offset, piece);
      expect(res.status).toBe(200);
      offset += piece.length;
    }
    expect(Buffer.compare(await read(base, open), Buffer.from(big))).toBe(0);
  }, 60_000);
});
