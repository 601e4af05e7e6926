/**
 * The relay's file HTTP API as the client calls it (docs/protocol.md "Files (HTTP)",
 * @latchkey/protocol files.ts): create an upload, append at an offset, ask the offset after a
 * dropped request, and ask a capability link. Every answer is checked against its schema; an
 * error answer becomes a LatchkeyError with the relay's code, a network failure UNAVAILABLE.
 */
import {
  ErrorResponse,
  FileLink,
  LatchkeyError,
  UPLOAD_OFFSET_HEADER,
  UploadState,
} from '@latchkey/protocol';
import type { FetchLike } from './key-service.ts';
import { tlsFailure } from './tls-errors.ts';

/** The relay's HTTP origin for a WebSocket URL: ws→http, wss→https, same host and port. */
export function relayHttpBase(relayUrl: string): string {
  const u = new URL(relayUrl);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  return u.origin;
}

/** The part of a zod schema this module uses. */
interface Schema<T> {
  safeParse(value: unknown): { success: true; data: T } | { success: false };
}

export interface FileHttp {
  fetch: FetchLike;
  base: string;
  token: string;
}

async function request(h: FileHttp, path: string, init: RequestInit): Promise<Response> {
  // Called unbound: a browser's fetch refuses to run as a method of another object.
  const f = h.fetch;
  try {
    return await f(`${h.base}${path}`, {
      ...init,
      cache: 'no-store',
      headers: { authorization: `Bearer ${h.token}`, ...(init.headers ?? {}) },
    });
  } catch (err) {
    if (init.signal?.aborted) throw new LatchkeyError('TIMEOUT', 'cancelled', { cause: err });
    throw (
      tlsFailure(err, 'relay') ??
      new LatchkeyError('UNAVAILABLE', 'relay unreachable', { cause: err })
    );
  }
}

async function answer<T>(res: Response, schema: Schema<T>): Promise<T> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new LatchkeyError('UNAVAILABLE', `relay answered ${res.status} without JSON`);
  }
  if (!res.ok) {
    const parsed = ErrorResponse.safeParse(body);
    if (parsed.success) throw new LatchkeyError(parsed.data.error.code, parsed.data.error.message);
    throw new LatchkeyError('UNAVAILABLE', `relay answered ${res.status}`);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new LatchkeyError('UNAVAILABLE', 'relay sent an invalid answer');
  return parsed.data;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/** `POST /v1/files`: reserves an upload of `size` ciphertext bytes. */
export async function createUpload(
  h: FileHttp,
  size: number,
  signal?: AbortSignal,
): Promise<UploadState> {
  const init: RequestInit = {
    method: 'POST',
    headers: JSON_HEADERS,
    body: JSON.stringify({ size }),
  };
  if (signal) init.signal = signal;
  return answer(await request(h, '/v1/files', init), UploadState);
}

/** `GET /v1/files/{blob}/upload`: where an upload stands (after a dropped request). */
export async function uploadState(
  h: FileHttp,
  blob: string,
  signal?: AbortSignal,
): Promise<UploadState> {
  const init: RequestInit = { method: 'GET' };
  if (signal) init.signal = signal;
  return answer(await request(h, `/v1/files/${blob}/upload`, init), UploadState);
}

/**
 * `PATCH /v1/files/{blob}` with `bytes` at `offset`. A 409 (the relay holds another offset)
 * answers with the relay's state instead of throwing, so the caller resumes from there.
 */
export async function appendUpload(
  h: FileHttp,
  blob: string,
  offset: number,
  bytes: Uint8Array,
  signal?: AbortSignal,
): Promise<UploadState> {
  const init: RequestInit = {
    method: 'PATCH',
    headers: {
      'content-type': 'application/offset+octet-stream',
      [UPLOAD_OFFSET_HEADER]: String(offset),
    },
    body: bytes as Uint8Array<ArrayBuffer>,
  };
  if (signal) init.signal = signal;
  const res = await request(h, `/v1/files/${blob}`, init);
  if (res.status === 409) {
    const state = await res
      .json()
      .then((b: unknown) => UploadState.safeParse(b))
      .catch(() => null);
    if (state?.success) return state.data;
    throw new LatchkeyError('CONFLICT', 'upload offset conflict');
  }
  return answer(res, UploadState);
}

/** `POST /v1/files/{blob}/link`: a short-lived capability URL (absolute) for reading the blob. */
export async function fileLink(
  h: FileHttp,
  blob: string,
  signal?: AbortSignal,
): Promise<{ url: string; size: number; expiresAt: number }> {
  const init: RequestInit = { method: 'POST' };
  if (signal) init.signal = signal;
  const link = await answer(await request(h, `/v1/files/${blob}/link`, init), FileLink);
  const url = new URL(link.url, h.base);
  // A link that leaves the relay's origin would send the reader elsewhere: refused.
  if (url.origin !== new URL(h.base).origin)
    throw new LatchkeyError('UNAVAILABLE', 'relay sent a link to another origin');
  return { url: url.href, size: link.size, expiresAt: link.expiresAt };
}
