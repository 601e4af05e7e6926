/**
 * The key service's wire errors (server.ts, admin.ts): Fastify's own errors mapped to the codes
 * they stand for, and every error sent as `{ error: { code, message } }` with the HTTP status
 * of ERROR_CODES (and a `www-authenticate` challenge for 401). Details stay in the logs.
 */
import type { FastifyReply } from 'fastify';
import { ERROR_CODES, LIMITS, LatchkeyError, type ErrorResponse } from '@latchkey/protocol';

const MESSAGE_MAX = 200;

/** Fastify's own errors, by code, as the wire error they stand for. */
export function frameworkError(err: unknown): LatchkeyError {
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  const status =
    typeof err === 'object' && err !== null && 'statusCode' in err ? err.statusCode : undefined;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new LatchkeyError(
        'TOO_LARGE',
        `request body exceeds ${LIMITS.maxHttpBodyBytes} bytes`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new LatchkeyError('BAD_REQUEST', 'content type must be application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new LatchkeyError('BAD_REQUEST', 'content length does not match the body');
    case 'FST_ERR_BAD_URL':
      return new LatchkeyError('BAD_REQUEST', 'malformed URL');
    default:
      break;
  }
  if (status === 413) return new LatchkeyError('TOO_LARGE', 'request too large');
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new LatchkeyError('BAD_REQUEST', 'bad request');
  }
  return new LatchkeyError('INTERNAL', 'internal error', {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

/** Sends `err` as the wire error, its message cut to 200 characters. */
export function sendError(reply: FastifyReply, err: LatchkeyError): FastifyReply {
  const status = ERROR_CODES[err.code].http;
  if (status === 401) {
    reply.header(
      'www-authenticate',
      err.code === 'AUTH_REQUIRED'
        ? 'Bearer realm="latchkey"'
        : 'Bearer realm="latchkey", error="invalid_token"',
    );
  }
  const body: ErrorResponse = {
    error: { code: err.code, message: err.message.slice(0, MESSAGE_MAX) },
  };
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}
