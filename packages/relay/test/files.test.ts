/**
 * The relay's file uploads over real HTTP on 127.0.0.1, a real SQLite file and blob directory:
 * an upload in several PATCHes, resuming after a request dropped mid-body (socket destroyed),
 * offset conflicts, TOO_LARGE (declared and actual, with and without content-length),
 * QUOTA_EXCEEDED, the per-participant limit of unfinished uploads, who may upload and PATCH,
 * a closed contact, and a completed upload surviving a restart of the relay.
 */
import { request } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UploadState } from '@latchkey/protocol';
import { Caller, errorCode, randomData, fileRelays } from './_files.ts';
import { token } from './_helpers.ts';

const start = fileRelays();

/** Polls `check` until it returns a value (every 20 ms, 5 s at most). */
async function until<T>(check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('uploads', () => {
  it('takes a file in several PATCHes, then serves it whole and by range', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const data = randomData(200_000);
    const created = await v.create(data.length);
    expect(created.status).toBe(201);
    const state = UploadState.parse(await created.json());
    expect(state).toMatchObject({ contactId: 'c1', size: data.length, offset: 0, complete: false });
    expect(created.headers.get('upload-offset')).toBe('0');
    let offset = 0;
    for (const piece of [70_000, 70_000, 60_000]) {
      const res = await v.patch(state.blob, offset, data.subarray(offset, offset + piece));
      expect(res.status).toBe(200);
      offset += piece;
      const s = UploadState.parse(await res.json());
      expect(s.offset).toBe(offset);
      expect(s.complete).toBe(offset === data.length);
      expect(res.headers.get('upload-offset')).toBe(String(offset));
    }
    // On disk: exactly the ciphertext, 0600 in a 0700 directory.
    const onDisk = await readFile(join(r.blobs, state.blob));
    expect(Buffer.compare(onDisk, Buffer.from(data))).toBe(0);
    expect((await stat(join(r.blobs, state.blob))).mode & 0o777).toBe(0o600);
    expect((await stat(r.blobs)).mode & 0o777).toBe(0o700);
    const url = await v.linkUrl(state.blob);
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('application/octet-stream');
    expect(whole.headers.get('content-disposition')).toBe('attachment');
    expect(whole.headers.get('x-content-type-options')).toBe('nosniff');
    expect(whole.headers.get('cache-control')).toBe('no-store');
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.compare(Buffer.from(await whole.arrayBuffer()), Buffer.from(data))).toBe(0);
    const part = await fetch(url, { headers: { range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${data.length}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(Buffer.from(data.subarray(1000, 2000)));
    const tail = await fetch(url, { headers: { range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer())).toEqual(Buffer.from(data.subarray(-10)));
    const metrics = await (await fetch(`${r.http}/metrics`)).text();
    expect(metrics).toContain(`latchkey_relay_file_bytes_uploaded_total ${data.length}`);
    expect(metrics).toContain(`latchkey_relay_file_bytes_downloaded_total ${data.length + 1010}`);
    expect(metrics).toContain('latchkey_relay_files_stored_total 1');
    const past = await fetch(url, { headers: { range: `bytes=${data.length}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${data.length}`);
    expect(await errorCode(past)).toBe('BAD_REQUEST');
  });

  it('resumes after a request dropped mid-body from the offset the relay recorded', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const data = randomData(300_000);
    const blob = await v.newBlob(data.length);
    const first = 100_000;
    // A PATCH announcing the whole file, cut off after `first` bytes have reached the disk.
    const req = request(`${r.http}/v1/files/${blob}`, {
      method: 'PATCH',
      headers: await v.headers({
        'content-type': 'application/offset+octet-stream',
        'upload-offset': '0',
        'content-length': String(data.length),
      }),
    });
    req.on('error', () => undefined);
    req.write(data.subarray(0, first));
    await until(async () =>
      (await stat(join(r.blobs, blob)).catch(() => null))?.size === first ? true : undefined,
    );
    req.destroy();
    const resumed = await until(async () => {
      const s = UploadState.parse(await (await v.state(blob)).json());
      return s.offset > 0 ? s : undefined;
    });
    expect(resumed.offset).toBe(first);
    expect(resumed.complete).toBe(false);
    const rest = await v.patch(blob, first, data.subarray(first));
    expect(rest.status).toBe(200);
    expect(UploadState.parse(await rest.json())).toMatchObject({
      offset: data.length,
      complete: true,
    });
    const got = Buffer.from(await (await fetch(await v.linkUrl(blob))).arrayBuffer());
    expect(Buffer.compare(got, Buffer.from(data))).toBe(0);
  });

  it('answers a wrong offset with 409 and the current state', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const blob = await v.newBlob(1000);
    expect((await v.patch(blob, 0, randomData(400))).status).toBe(200);
    for (const wrong of [0, 399, 401, 1000]) {
      const res = await v.patch(blob, wrong, randomData(10));
      expect(res.status).toBe(409);
      expect(res.headers.get('upload-offset')).toBe('400');
      expect(UploadState.parse(await res.json())).toMatchObject({ offset: 400, complete: false });
    }
    const rest = await v.patch(blob, 400, randomData(600));
    expect(rest.status).toBe(200);
    // Complete: any further PATCH conflicts.
    const after = await v.patch(blob, 1000, new Uint8Array(0));
    expect(after.status).toBe(409);
    expect(UploadState.parse(await after.json()).complete).toBe(true);
  });

  it('refuses a declared size over the limit and bytes past the declared size', async () => {
    const r = await start({ files: { maxFileBytes: 4096 } });
    const v = new Caller(r.http, 'c1', 'v1');
    const big = await v.create(4097);
    expect(big.status).toBe(413);
    expect(await errorCode(big)).toBe('TOO_LARGE');
    const blob = await v.newBlob(1000);
    // With content-length: refused before reading.
    const declared = await v.patch(blob, 0, randomData(1001));
    expect(declared.status).toBe(413);
    expect(await errorCode(declared)).toBe('TOO_LARGE');
    expect(UploadState.parse(await (await v.state(blob)).json()).offset).toBe(0);
    // Streamed without a length: what fits is kept, nothing past the size.
    const body = randomData(1500);
    const streamed = await fetch(`${r.http}/v1/files/${blob}`, {
      method: 'PATCH',
      headers: await v.headers({
        'content-type': 'application/offset+octet-stream',
        'upload-offset': '0',
      }),
      body: new ReadableStream({
        start(c) {
          c.enqueue(body);
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(await errorCode(streamed)).toBe('TOO_LARGE');
    expect((await stat(join(r.blobs, blob))).size).toBe(1000);
    const s = UploadState.parse(await (await v.state(blob)).json());
    expect(s.offset).toBe(1000);
  });

  it('reserves declared sizes against the contact quota and caps unfinished uploads', async () => {
    const r = await start({ files: { contactQuotaBytes: 1000, maxIncompletePerParticipant: 2 } });
    const v = new Caller(r.http, 'c1', 'v1');
    const a = new Caller(r.http, 'c1', 'a1', 'agent');
    await v.newBlob(600);
    const over = await a.create(401);
    expect(over.status).toBe(429);
    expect(await errorCode(over)).toBe('QUOTA_EXCEEDED');
    await a.newBlob(400);
    // Another contact has its own quota.
    await new Caller(r.http, 'c2', 'v1').newBlob(1000);
    const r2 = await start({ files: { maxIncompletePerParticipant: 2 } });
    const w = new Caller(r2.http, 'c3', 'v1');
    await w.newBlob(100);
    await w.newBlob(100);
    const third = await w.create(100);
    expect(third.status).toBe(429);
    expect(await errorCode(third)).toBe('RATE_LIMITED');
  });

  it('lets only visitors and agents upload, and only the uploader PATCH or read the state', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const sup = await new Caller(r.http, 'c1', 's1', 'supervisor').create(100);
    expect(sup.status).toBe(403);
    expect(await errorCode(sup)).toBe('FORBIDDEN');
    const blob = await v.newBlob(100);
    const agent = new Caller(r.http, 'c1', 'a1', 'agent');
    await agent.newBlob(100); // admitted
    const notMine = await agent.patch(blob, 0, randomData(100));
    expect(notMine.status).toBe(403);
    expect((await agent.state(blob)).status).toBe(403);
    const otherContact = new Caller(r.http, 'c2', 'v1');
    await otherContact.newBlob(100);
    const elsewhere = await otherContact.patch(blob, 0, randomData(100));
    expect(elsewhere.status).toBe(404);
    expect(await errorCode(elsewhere)).toBe('NOT_FOUND');
    expect((await otherContact.link(blob)).status).toBe(404);
    // A kicked uploader stops at once.
    await r.relay.contacts.kick('c1', 'v1', Date.now());
    expect((await v.patch(blob, 0, randomData(100))).status).toBe(403);
    expect((await v.create(100)).status).toBe(403);
  });

  it('refuses uploads into a closed contact and reads from an expired one', async () => {
    const r = await start();
    const v = new Caller(r.http, 'c1', 'v1');
    const data = randomData(100);
    const done = await v.upload(data);
    const open = await v.newBlob(100);
    await r.relay.contacts.closeContact('c1', Date.now());
    const closed = await v.create(100);
    expect(closed.status).toBe(423);
    expect(await errorCode(closed)).toBe('CONTACT_CLOSED');
    expect((await v.patch(open, 0, randomData(100))).status).toBe(423);
    // History stays readable in a closed contact: links too.
    const url = await v.linkUrl(done);
    expect((await fetch(url)).status).toBe(200);
    await r.relay.contacts.setExpiry('c1', Date.now(), Date.now());
    const gone = await fetch(url);
    expect(gone.status).toBe(410);
    expect(await errorCode(gone)).toBe('CONTACT_EXPIRED');
  });

  it('keeps a completed upload across a restart of the relay', async () => {
    const first = await start();
    const v = new Caller(first.http, 'c1', 'v1');
    const data = randomData(50_000);
    const blob = await v.upload(data, 20_000);
    await first.close(); // idempotent: closing it again after the test does nothing
    const second = await start({}, first.dir);
    const again = new Caller(second.http, 'c1', 'v1');
    const state = UploadState.parse(await (await again.state(blob)).json());
    expect(state).toMatchObject({ offset: data.length, complete: true });
    const got = Buffer.from(await (await fetch(await again.linkUrl(blob))).arrayBuffer());
    expect(Buffer.compare(got, Buffer.from(data))).toBe(0);
    void token;
  });
});
