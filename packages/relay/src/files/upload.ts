/**
 * The upload routes (docs/protocol.md "Files (HTTP)"): `POST /v1/files` reserves an upload of a
 * declared size against the contact's quota, `PATCH /v1/files/{blob}` appends a request's body
 * at the offset the client names (which must be the stored one), `GET /v1/files/{blob}/upload`
 * says where it stands. A body is streamed into the blob store, never buffered whole; when the
 * request ends, however it ends (complete, too long, dropped mid-body), what was written is made
 * durable and its offset recorded, so the client resumes from there.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  CreateUploadRequest,
  LatchkeyError,
  parseRequest,
  type Principal,
} from '@latchkey/protocol';
import { readJson } from '../http-json.ts';
import { emitAdmission } from '../webhook-events.ts';
import type { WebhookService } from '@latchkey/webhooks';
import type { FilesContext } from './config.ts';
import { sendError, sendState } from './http.ts';
import { advance, createBlob, getBlob, memberBlob, type BlobRow } from './meta.ts';
import { randomBytes } from 'node:crypto';

/** Roles that may upload (the roles that send messages). */
const UPLOAD_ROLES = new Set(['visitor', 'agent']);

/** `POST /v1/files` */
export async function createUpload(
  ctx: FilesContext,
  p: Principal,
  req: IncomingMessage,
  res: ServerResponse,
  webhooks: WebhookService | undefined,
): Promise<void> {
  if (!UPLOAD_ROLES.has(p.role)) throw new LatchkeyError('FORBIDDEN', 'this role may not upload');
  const { size } = parseRequest(CreateUploadRequest, await readJson(req));
  if (size > ctx.limits.maxFileBytes) throw new LatchkeyError('TOO_LARGE', 'file too large');
  // Admitted as the WebSocket `auth` admits: kicked, departed, expired, full are refused here.
  const at = ctx.now();
  emitAdmission(webhooks, await ctx.contacts.admit(p, at, ctx.policy), p.participantId, at);
  const blob = randomBytes(16).toString('base64url');
  const row = await ctx.meta.runFileFlow(
    'create',
    (sql) => createBlob(sql, p, blob, size, ctx.now(), ctx.limits),
    true,
  );
  ctx.log({ event: 'file-created', contactId: p.contactId, participantId: p.participantId, size });
  sendState(res, 201, row);
}

/** `GET /v1/files/{blob}/upload` */
export async function getUpload(
  ctx: FilesContext,
  p: Principal,
  blob: string,
  res: ServerResponse,
): Promise<void> {
  const { blob: row } = await ctx.meta.runFileFlow(
    'state',
    (sql) => memberBlob(sql, p, blob, ctx.now()),
    false,
  );
  if (row.uploaderId !== p.participantId)
    throw new LatchkeyError('FORBIDDEN', 'only the uploader may read the upload state');
  sendState(res, 200, row);
}

/** A non-negative integer header of at most 15 digits, else BAD_REQUEST. */
function intHeader(v: string | string[] | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v))
    throw new LatchkeyError('BAD_REQUEST', `${name} must be a non-negative integer`);
  return Number(v);
}

/** `PATCH /v1/files/{blob}` */
export async function patchUpload(
  ctx: FilesContext,
  p: Principal,
  blob: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const type = req.headers['content-type'];
  if (typeof type !== 'string' || !/^application\/offset\+octet-stream\s*$/i.test(type))
    throw new LatchkeyError('BAD_REQUEST', 'content type must be application/offset+octet-stream');
  const offset = intHeader(req.headers['upload-offset'], 'upload-offset');
  if (offset === undefined) throw new LatchkeyError('BAD_REQUEST', 'upload-offset required');
  const length = intHeader(req.headers['content-length'], 'content-length');
  if (length !== undefined && length > ctx.limits.maxUploadRequestBytes)
    throw new LatchkeyError('TOO_LARGE', 'request body too large');
  const { blob: row, state } = await ctx.meta.runFileFlow(
    'state',
    (sql) => memberBlob(sql, p, blob, ctx.now()),
    false,
  );
  if (row.uploaderId !== p.participantId)
    throw new LatchkeyError('FORBIDDEN', 'only the uploader may upload');
  if (state !== 'open') throw new LatchkeyError('CONTACT_CLOSED');
  if (ctx.writing.has(blob) || row.complete || row.received !== offset) {
    // The body is not read: the connection closes after the answer rather than draining it.
    sendState(res, 409, row, req.complete ? {} : { connection: 'close' });
    req.resume();
    return;
  }
  if (length !== undefined && offset + length > row.size)
    throw new LatchkeyError('TOO_LARGE', 'body goes past the declared size');
  ctx.writing.add(blob);
  try {
    await write(ctx, p, row, req, res);
  } finally {
    ctx.writing.delete(blob);
  }
}

/** Bytes of a too-long body read and dropped before the connection is cut. */
const DRAIN_BYTES = 1024 * 1024;

async function write(
  ctx: FilesContext,
  p: Principal,
  row: BlobRow,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const from = row.received;
  const room = Math.min(row.size - from, ctx.limits.maxUploadRequestBytes);
  const writer = await ctx.blobs.openWriter(row.blob, from);
  let written = 0;
  let overflow = false;
  let dropped = 0;
  let failure: unknown;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      if (overflow) {
        dropped += chunk.length;
        if (dropped > DRAIN_BYTES) break;
        continue;
      }
      const take = Math.min(chunk.length, room - written);
      if (take > 0) {
        await writer.write(take === chunk.length ? chunk : chunk.subarray(0, take));
        written += take;
      }
      if (take < chunk.length) overflow = true;
    }
  } catch (err) {
    // A dropped connection ('aborted') or a failed write: keep what is on disk.
    failure = err;
  }
  let to = from;
  try {
    to = await writer.sync();
  } catch (err) {
    failure ??= err;
    to = from;
  } finally {
    await writer.close();
  }
  ctx.metrics.fileBytesUploaded += to - from;
  const done = failure === undefined && !overflow && to === row.size;
  const now = ctx.now();
  const recorded =
    to === from && !done
      ? true
      : await ctx.meta.runFileFlow(
          'advance',
          (sql) => advance(sql, row.blob, from, to, done, now),
          true,
        );
  if (!recorded) {
    // The blob was deleted (a shred) or moved on meanwhile: report where it stands.
    const now2 = await ctx.meta.runFileFlow('get', (sql) => getBlob(sql, row.blob), false);
    if (!now2) {
      await ctx.blobs.delete([row.blob]).catch(() => undefined);
      throw new LatchkeyError('NOT_FOUND', 'no such file');
    }
    if (!res.writableEnded && !req.destroyed) sendState(res, 409, now2);
    return;
  }
  const after: BlobRow = { ...row, received: to, complete: done };
  if (done) ctx.onStored(p, row.blob, row.size, now);
  if (failure !== undefined) {
    if (req.destroyed || res.destroyed) return;
    throw failure;
  }
  if (overflow) {
    sendError(
      res,
      new LatchkeyError('TOO_LARGE', 'body goes past the declared size or request limit'),
      {
        'upload-offset': String(to),
        connection: 'close',
      },
    );
    return;
  }
  sendState(res, 200, after);
}
