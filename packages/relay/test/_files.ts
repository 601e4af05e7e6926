/**
 * Helpers of the file API tests (files*.test.ts): a relay over a real SQLite file and blob
 * directory on 127.0.0.1 port 0, and calls of its HTTP API with a participant token.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Role } from '@latchkey/protocol';
import { createRelay, type Relay, type RelayOptions } from '../src/index.ts';
import { SECRET, token } from './_helpers.ts';

export interface FileRelay {
  relay: Relay;
  dir: string;
  /** The SQLite file. */
  db: string;
  /** The blob directory. */
  blobs: string;
  /** `http://127.0.0.1:port` */
  http: string;
  close(): Promise<void>;
}

/** A relay over `<tmp>/m.db` (blobs in `<tmp>/m.db.files`) unless `over.store` says otherwise. */
export async function startFileRelay(
  over: Partial<RelayOptions> = {},
  dir?: string,
): Promise<FileRelay> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'latchkey-files-')));
  const db = join(d, 'm.db');
  const relay = createRelay({ store: { path: db }, apiSecret: SECRET, ...over });
  const { url } = await relay.listen({ host: '127.0.0.1', port: 0 });
  return {
    relay,
    dir: d,
    db,
    blobs: `${db}.files`,
    http: url.replace(/^ws/, 'http'),
    close: async () => {
      await relay.close();
    },
  };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A participant of a contact calling the file API. */
/**
 * A `start` for one test file: each relay it starts (in a new directory, or in `dir` again to
 * restart on the same data) is closed after each test, then its directories removed.
 */
export function fileRelays(): (
  over?: Parameters<typeof startFileRelay>[0],
  dir?: string,
) => Promise<FileRelay> {
  const running: FileRelay[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.close()));
    await Promise.all(dirs.splice(0).map(removeDir));
  });
  return async (over = {}, dir) => {
    const r = await startFileRelay(over, dir);
    running.push(r);
    if (!dirs.includes(r.dir)) dirs.push(r.dir);
    return r;
  };
}

export class Caller {
  constructor(
    readonly http: string,
    readonly contactId: string,
    readonly participantId: string,
    readonly role: Role = 'visitor',
  ) {}

  async headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    return {
      authorization: `Bearer ${await token(this.contactId, this.participantId, this.role)}`,
      ...extra,
    };
  }

  async create(size: number): Promise<Response> {
    return fetch(`${this.http}/v1/files`, {
      method: 'POST',
      headers: await this.headers({ 'content-type': 'application/json' }),
      body: JSON.stringify({ size }),
    });
  }

  /** Creates an upload; returns its blob id. @throws when not 201 */
  async newBlob(size: number): Promise<string> {
    const res = await this.create(size);
    if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { blob: string }).blob;
  }

  async patch(blob: string, offset: number | string, body: Uint8Array): Promise<Response> {
    return fetch(`${this.http}/v1/files/${blob}`, {
      method: 'PATCH',
      headers: await this.headers({
        'content-type': 'application/offset+octet-stream',
        'upload-offset': String(offset),
      }),
      body: body as Uint8Array<ArrayBuffer>,
    });
  }

  async state(blob: string): Promise<Response> {
    return fetch(`${this.http}/v1/files/${blob}/upload`, { headers: await this.headers() });
  }

  async link(blob: string): Promise<Response> {
    return fetch(`${this.http}/v1/files/${blob}/link`, {
      method: 'POST',
      headers: await this.headers(),
    });
  }

  /** Uploads `data` whole in pieces of `piece` bytes; returns the blob id. */
  async upload(data: Uint8Array, piece = data.length): Promise<string> {
    const blob = await this.newBlob(data.length);
    for (let at = 0; at < data.length; at += piece) {
      const res = await this.patch(blob, at, data.subarray(at, at + piece));
      if (res.status !== 200) throw new Error(`patch: ${res.status} ${await res.text()}`);
    }
    return blob;
  }

  /** A capability URL (absolute) for `blob`. @throws when not 200 */
  async linkUrl(blob: string): Promise<string> {
    const res = await this.link(blob);
    if (res.status !== 200) throw new Error(`link: ${res.status} ${await res.text()}`);
    return `${this.http}${((await res.json()) as { url: string }).url}`;
  }
}

export const randomData = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** The JSON error code of an answer. */
export async function errorCode(res: Response): Promise<string> {
  const body = (await res.json()) as { error?: { code?: string } };
  return body.error?.code ?? `(no error body, status ${res.status})`;
}
