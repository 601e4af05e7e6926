/**
 * JSON over node:http for the relay's admin routes (admin-api.ts, webhooks-api.ts): one way to
 * write an answer (no caching, no sniffing) and one bounded way to read a body. Kept apart so
 * that both route files import it and neither imports the other.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LIMITS, LatchkeyError } from '@latchkey/protocol';

/** Writes `body` as JSON with `status`. */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

/** Reads a JSON body of at most LIMITS.maxHttpBodyBytes; an empty body is `{}`. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'];
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > LIMITS.maxHttpBodyBytes)
      throw new LatchkeyError('TOO_LARGE', 'request body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  if (type === undefined || !/^application\/json\b/i.test(type)) {
    throw new LatchkeyError('BAD_REQUEST', 'content type must be application/json');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new LatchkeyError('BAD_REQUEST', 'request body is not valid JSON');
  }
}
