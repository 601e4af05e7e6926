/**
 * Reading a file: `POST /v1/files/{blob}/link` gives an active member of the blob's contact a
 * short-lived capability URL (capability.ts); `GET /v1/files/{blob}?cap=...` serves the
 * ciphertext to whoever holds one, without a token (an <a download> or a fetch from a worker),
 * as long as the participant it names is still an active member and the contact not expired,
 * checked at every request: a kicked participant's links stop working at once. One byte range
 * (`Range: bytes=a-b`) may be asked; the answer is streamed from the blob store.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { CAPABILITY_PARAM, LatchkeyError, type FileLink, type Principal } from '@latchkey/protocol';
import { send } from '../http-json.ts';
import { signCapability, verifyCapability } from './capability.ts';
import type { FilesContext } from './config.ts';
import { memberBlob } from './meta.ts';

/** `POST /v1/files/{blob}/link` */
export async function createLink(
  ctx: FilesContext,
  p: Principal,
  blob: string,
  res: ServerResponse,
): Promise<void> {
  const { blob: row } = await ctx.meta.runFileFlow(
    'link',
    (sql) => memberBlob(sql, p, blob, ctx.now()),
    false,
  );
  if (!row.complete) throw new LatchkeyError('CONFLICT', 'the upload is not complete');
  const e = Math.floor(ctx.now() / 1000) + ctx.limits.linkTtlSeconds;
  const cap = signCapability(ctx.linkKey, {
    b: row.blob,
    c: row.contactId,
    p: p.participantId,
    e,
  });
  const link: FileLink = {
    url: `/v1/files/${row.blob}?${CAPABILITY_PARAM}=${cap}`,
    expiresAt: e * 1000,
    size: row.size,
  };
  send(res, 200, link);
}

/**
 * The byte range asked (end exclusive), null for the whole file. A header that is not one
 * `bytes=` range is ignored (RFC 9110 allows it).
 * @throws LatchkeyError BAD_REQUEST (sent as 416) when the range lies past the end.
 */
export function parseRange(
  header: string | string[] | undefined,
  size: number,
): { start: number; end: number } | null {
  if (typeof header !== 'string') return null;
  const m = /^bytes=(\d{0,20})-(\d{0,20})$/.exec(header.trim());
  if (!m) return null;
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return null;
  let start: number;
  let end: number;
  if (a === '') {
    const n = Number(b);
    if (n === 0) throw new LatchkeyError('BAD_REQUEST', 'range not satisfiable');
    start = Math.max(0, size - n);
    end = size;
  } else {
    start = Number(a);
    end = b === '' ? size : Math.min(size, Number(b) + 1);
    if (b !== '' && Number(b) < start) return null;
  }
  if (start >= size) throw new LatchkeyError('BAD_REQUEST', 'range not satisfiable');
  return { start, end };
}

const DOWNLOAD_HEADERS = {
  'content-type': 'application/octet-stream',
  'content-disposition': 'attachment',
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'accept-ranges': 'bytes',
  'cross-origin-resource-policy': 'cross-origin',
} as const;

/** `GET /v1/files/{blob}?cap=...` */
export async function download(
  ctx: FilesContext,
  blob: string,
  url: URL,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const caps = url.searchParams.getAll(CAPABILITY_PARAM);
  if (caps.length !== 1) throw new LatchkeyError('FORBIDDEN', 'a link needs one capability');
  const claims = verifyCapability(ctx.linkKey, caps[0], ctx.now());
  if (claims.b !== blob) throw new LatchkeyError('FORBIDDEN', 'invalid link');
  const { blob: row } = await ctx.meta.runFileFlow(
    'read',
    (sql) => memberBlob(sql, { contactId: claims.c, participantId: claims.p }, blob, ctx.now()),
    false,
  );
  if (!row.complete) throw new LatchkeyError('NOT_FOUND', 'no such file');
  let range: { start: number; end: number } | null;
  try {
    range = parseRange(req.headers.range, row.size);
  } catch (err) {
    if (!LatchkeyError.is(err, 'BAD_REQUEST')) throw err;
    res.statusCode = 416;
    sendRangeError(res, row.size);
    return;
  }
  const { start, end } = range ?? { start: 0, end: row.size };
  const stream = await ctx.blobs.read(blob, start, end);
  res.writeHead(range ? 206 : 200, {
    ...DOWNLOAD_HEADERS,
    'content-length': String(end - start),
    ...(range ? { 'content-range': `bytes ${start}-${end - 1}/${row.size}` } : {}),
  });
  stream.on('data', (chunk: Buffer) => {
    ctx.metrics.fileBytesDownloaded += chunk.length;
  });
  try {
    await pipeline(stream, res);
  } catch {
    // The reader went away, or the store failed mid-stream: the connection is cut short.
    res.destroy();
  }
}

/** 416 with the JSON error body and the file's size. */
function sendRangeError(res: ServerResponse, size: number): void {
  const body = JSON.stringify({
    error: { code: 'BAD_REQUEST', message: 'range not satisfiable' },
  });
  res.writeHead(416, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'content-range': `bytes */${size}`,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}
