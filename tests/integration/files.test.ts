/**
 * Encrypted attachments end to end (docs/protocol.md "Files", docs/threat-model.md): a file sent
 * by one participant is read back exactly by another; the relay holds only ciphertext of the
 * announced length; a relay that alters a blob, or swaps the blobs of two messages, makes the
 * read fail with DECRYPT_FAILED (the ciphertext is bound to its contact and message); an upload
 * dropped mid-request resumes; scan verdicts count only from a scanner and block what they
 * should; a kicked member's reads stop.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ChatMessage, FetchLike, LatchkeyClient } from '@latchkey/client';
import { chunkedCiphertextLength } from '@latchkey/crypto/chunked';
import { ADMIN_PATHS, LatchkeyError } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import { startStack, until, type Stack } from './harness.ts';

let stack: Stack;
beforeEach(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await stack.close();
});

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = s.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  return new Uint8Array(Buffer.concat(parts));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return LatchkeyError.is(err) ? err.code : `other: ${String(err)}`;
  }
}

/** Every regular file under `dir`. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out;
}

/** The relay's stored blob files of exactly `size` bytes. */
async function blobFiles(size: number): Promise<string[]> {
  const found: string[] = [];
  for (const f of await filesUnder(stack.dir)) {
    if (!f.includes('.files')) continue;
    if ((await stat(f)).size === size) found.push(f);
  }
  return found;
}

async function pair(
  contact: string,
): Promise<{ visitor: LatchkeyClient; agent: LatchkeyClient; got: ChatMessage[] }> {
  const visitor = await stack.client(await stack.token(contact, 'v1', 'visitor'));
  const agent = await stack.client(await stack.token(contact, 'a1', 'agent'));
  const got: ChatMessage[] = [];
  agent.on('message', (m) => got.push(m));
  return { visitor, agent, got };
}

const blob = (b: Uint8Array, type = ''): Blob => new Blob([b as Uint8Array<ArrayBuffer>], { type });

describe('files', () => {
  it('a file sent by the visitor is read back exactly by the agent; the relay holds only ciphertext', async () => {
    const { visitor, agent, got } = await pair('c-files-1');
    const marker = new TextEncoder().encode('PLAINTEXT-MARKER-'.repeat(4));
    const data = new Uint8Array(40_000);
    data.set(bytes(40_000));
    data.set(marker, 20_000);
    const file = new File([data], 'invoice 2026.pdf', { type: 'application/pdf' });
    const sent = await visitor.sendFile(file, { text: 'my invoice' });
    await until(() => got.some((m) => m.seq === sent.seq), 10_000, 'the file message');
    const m = got.find((x) => x.seq === sent.seq)!;
    expect(m.text).toBe('my invoice');
    expect(m.file).toEqual({
      name: 'invoice 2026.pdf',
      size: 40_000,
      type: 'application/pdf',
      sha256: sha256(data),
      thumbnail: null,
      scan: 'unscanned',
    });
    expect(await readAll(agent.openFile(sent.seq))).toEqual(data);

    // What the relay stored: one blob of the ciphertext's length, without the plaintext or name.
    const stored = await blobFiles(chunkedCiphertextLength(40_000));
    expect(stored).toHaveLength(1);
    const needle = Buffer.from('PLAINTEXT-MARKER-');
    for (const f of await filesUnder(stack.dir)) {
      const content = await readFile(f);
      expect(content.includes(needle), f).toBe(false);
      expect(content.includes(Buffer.from('invoice 2026')), f).toBe(false);
    }
  });

  it('sizes at chunk edges (0, 16384, 32768, 32769 bytes) round-trip, with thumbnails', async () => {
    const { visitor, agent, got } = await pair('c-files-2');
    for (const n of [0, 16_384, 32_768, 32_769]) {
      const data = bytes(n, n + 7);
      const thumb = bytes(900, n + 9);
      const sent = await visitor.sendFile(blob(data), {
        thumbnail: { bytes: thumb, type: 'image/jpeg', width: 32, height: 24 },
      });
      await until(() => got.some((m) => m.seq === sent.seq), 10_000, `file of ${n}`);
      const m = got.find((x) => x.seq === sent.seq)!;
      expect(m.file?.name).toBe('file');
      expect(m.file?.type).toBe('application/octet-stream');
      expect(m.file?.thumbnail).toEqual({ type: 'image/jpeg', width: 32, height: 24 });
      expect(await readAll(agent.openFile(sent.seq))).toEqual(data);
      expect(await agent.thumbnail(sent.seq)).toEqual(thumb);
    }
  });

  it('a relay that alters a stored blob makes the read fail with DECRYPT_FAILED', async () => {
    const { visitor, agent, got } = await pair('c-files-3');
    const data = bytes(50_000, 3);
    const sent = await visitor.sendFile(blob(data));
    await until(() => got.some((m) => m.seq === sent.seq), 10_000, 'the file message');
    const [path] = await blobFiles(chunkedCiphertextLength(50_000));
    const ct = await readFile(path!);
    ct.writeUInt8(ct.readUInt8(30_000) ^ 1, 30_000); // inside the second chunk
    await writeFile(path!, ct);
    expect(await codeOf(readAll(agent.openFile(sent.seq)))).toBe('DECRYPT_FAILED');
  });

  it('a relay that swaps the blobs of two messages of the same size makes both reads fail', async () => {
    const { visitor, agent, got } = await pair('c-files-4');
    const a = bytes(20_000, 4);
    const b = bytes(20_000, 5);
    const sa = await visitor.sendFile(blob(a));
    const sb = await visitor.sendFile(blob(b));
    await until(() => got.filter((m) => m.file).length === 2, 10_000, 'two file messages');
    const paths = await blobFiles(chunkedCiphertextLength(20_000));
    expect(paths).toHaveLength(2);
    const [x, y] = await Promise.all(paths.map((p) => readFile(p)));
    await writeFile(paths[0]!, y!);
    await writeFile(paths[1]!, x!);
    expect(await codeOf(readAll(agent.openFile(sa.seq)))).toBe('DECRYPT_FAILED');
    expect(await codeOf(readAll(agent.openFile(sb.seq)))).toBe('DECRYPT_FAILED');
  });

  it('an upload whose request dropped midway resumes from the offset the relay kept', async () => {
    let patches = 0;
    let resumedFrom = -1;
    const flaky: FetchLike = async (input, init) => {
      if (init?.method === 'PATCH' && ++patches === 2) {
        // Half the body reaches the relay, then the connection "drops".
        const body = init.body as Uint8Array;
        const half = body.subarray(0, Math.floor(body.length / 2) + 5);
        await fetch(input, { ...init, body: half as Uint8Array<ArrayBuffer> });
        throw new TypeError('fetch failed: socket hang up');
      }
      if (init?.method === 'PATCH' && patches === 3)
        resumedFrom = Number(new Headers(init.headers).get('upload-offset'));
      return fetch(input, init);
    };
    const visitor = await stack.client(await stack.token('c-files-5', 'v1', 'visitor'), {
      fetch: flaky,
    });
    const agent = await stack.client(await stack.token('c-files-5', 'a1', 'agent'));
    const got: ChatMessage[] = [];
    agent.on('message', (m) => got.push(m));
    const data = bytes(6 * 1024 * 1024 + 123, 6); // three upload requests at least
    const sent = await visitor.sendFile(blob(data));
    expect(patches).toBeGreaterThanOrEqual(3);
    // It resumed inside a chunk, where the relay stopped, not from the start.
    expect(resumedFrom).toBeGreaterThan(1024 * 1024);
    expect((resumedFrom - 56) % (16_384 + 16)).not.toBe(0);
    await until(() => got.some((m) => m.seq === sent.seq), 10_000, 'the file message');
    const back = await readAll(agent.openFile(sent.seq));
    expect(sha256(back)).toBe(sha256(data));
  });

  it('a scanner verdict updates the file; infected blocks reading; scanning keeps files pending until clean', async () => {
    const contact = 'c-files-6';
    const visitor = await stack.client(await stack.token(contact, 'v1', 'visitor'));
    const agent = await stack.client(await stack.token(contact, 'a1', 'agent'), { scanning: true });
    const scanner = await stack.client(await stack.token(contact, 'scan1', 'scanner'));
    const got: ChatMessage[] = [];
    const scans: { seq: number; scan: string; signature?: string }[] = [];
    agent.on('message', (m) => got.push(m));
    agent.on('scan', (u) => scans.push(u));
    const bad = bytes(3000, 8);
    const good = bytes(3000, 9);
    const sBad = await visitor.sendFile(blob(bad));
    const sGood = await visitor.sendFile(blob(good));
    await until(() => got.filter((m) => m.file).length === 2, 10_000, 'two file messages');
    expect(got.find((m) => m.seq === sBad.seq)?.file?.scan).toBe('pending');
    // Pending while a scanner runs: refused.
    expect(() => agent.openFile(sGood.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));

    // The scanner reads files regardless, and posts signed verdicts.
    await until(() => scanner.lastSeq >= sGood.seq, 10_000, 'scanner caught up');
    await scanner.history(0);
    expect(await readAll(scanner.openFile(sBad.seq))).toEqual(bad);
    const mBad = got.find((m) => m.seq === sBad.seq)!;
    const mGood = got.find((m) => m.seq === sGood.seq)!;
    await scanner.sendVerdict({
      ref: mBad.msgId,
      sha256: sha256(bad),
      verdict: 'infected',
      signature: 'Latchkey.Test.Sig',
    });
    await scanner.sendVerdict({ ref: mGood.msgId, sha256: sha256(good), verdict: 'clean' });
    await until(() => scans.length === 2, 10_000, 'two scan updates');
    expect(scans).toEqual([
      { seq: sBad.seq, msgId: mBad.msgId, scan: 'infected', signature: 'Latchkey.Test.Sig' },
      { seq: sGood.seq, msgId: mGood.msgId, scan: 'clean' },
    ]);
    expect(() => agent.openFile(sBad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    expect(await readAll(agent.openFile(sGood.seq))).toEqual(good);

    // A later history read shows the same states; the verdict messages carry what they say.
    const history = await agent.history(0);
    const fileStates = history.flatMap((e) => (e.ok && e.file ? [e.file.scan] : []));
    expect(fileStates).toEqual(['infected', 'clean']);
    expect(history.filter((e) => e.ok && e.verdict).length).toBe(2);

    // A scanner may not send text, nor anyone else a verdict.
    expect(await codeOf(scanner.send('hello'))).toBe('FORBIDDEN');
    expect(
      await codeOf(visitor.sendVerdict({ ref: mBad.msgId, sha256: sha256(bad), verdict: 'clean' })),
    ).toBe('FORBIDDEN');
  });

  it('a verdict naming other bytes than the message says does not change the file', async () => {
    const contact = 'c-files-7';
    const visitor = await stack.client(await stack.token(contact, 'v1', 'visitor'));
    const agent = await stack.client(await stack.token(contact, 'a1', 'agent'));
    const scanner = await stack.client(await stack.token(contact, 'scan1', 'scanner'));
    const data = bytes(100, 10);
    const sent = await visitor.sendFile(blob(data));
    await until(() => scanner.lastSeq >= sent.seq, 10_000, 'scanner caught up');
    const [entry] = (await scanner.history(sent.seq - 1)).filter((e) => e.seq === sent.seq);
    await scanner.sendVerdict({
      ref: entry!.msgId,
      sha256: sha256(bytes(100, 11)),
      verdict: 'infected',
      signature: 'X',
    });
    await until(() => agent.lastSeq >= sent.seq + 1, 10_000, 'the verdict');
    const entry2 = (await agent.history(0)).find((e) => e.seq === sent.seq);
    expect(entry2?.ok && entry2.file?.scan).toBe('unscanned');
  });

  it('a kicked member can no longer read a file it could read before', async () => {
    const { visitor, agent, got } = await pair('c-files-8');
    const data = bytes(5000, 12);
    const sent = await visitor.sendFile(blob(data));
    await until(() => got.some((m) => m.seq === sent.seq), 10_000, 'the file message');
    expect(await readAll(agent.openFile(sent.seq))).toEqual(data);
    const res = await fetch(
      `${stack.relayUrl.replace('ws', 'http')}${ADMIN_PATHS.kick('c-files-8')}`,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: adminAuthorization(deriveAdminKey(stack.secret)),
        },
        body: JSON.stringify({ participantId: 'a1' }),
      },
    );
    expect(res.status).toBeLessThan(300);
    expect(['FORBIDDEN', 'AUTH_INVALID', 'CONTACT_CLOSED', 'NOT_FOUND']).toContain(
      await codeOf(readAll(agent.openFile(sent.seq))),
    );
  });
});
