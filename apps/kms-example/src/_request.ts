/**
 * What the reference key manager's routes share (kms.ts, wrap-routes.ts, store-routes.ts): the
 * audit facts a request gathers on its way (`note`), the revocation check, and the parsing of
 * bodies and path parameters that answers 400 BAD_REQUEST in the API's error shape.
 */
import type { FastifyRequest } from 'fastify';
import { LatchkeyError, type ErrorCode } from '@latchkey/protocol';
import type { z } from 'zod';
import type { KmsStore } from './store.ts';

/** What the audit records of one request, gathered by the hooks and the route. */
export interface Pending {
  clientId: string | null;
  operation: string;
  contactId: string | null;
  epoch: number | null;
  reason: string | null;
}

/** What a route needs besides its request. */
export interface RouteContext {
  store: KmsStore;
  /** Adds audit facts to the request. */
  note(req: FastifyRequest, p: Partial<Pending>): void;
  /** @throws LatchkeyError FORBIDDEN for a revoked contact, or one destroyed under `keyId`. */
  refuseRevoked(contactId: string, keyId?: string): void;
}

/** @throws LatchkeyError with `code`, answered in the API's error shape. */
export function fail(code: ErrorCode, message: string): never {
  throw new LatchkeyError(code, message);
}

/**
 * The JSON body (raw bytes, as the signature covers them) parsed by `schema`.
 * @throws LatchkeyError BAD_REQUEST for a body that is not JSON or not of the schema.
 */
export function parse<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  let json: unknown;
  try {
    json =
      body instanceof Buffer && body.length > 0 ? JSON.parse(body.toString('utf8')) : undefined;
  } catch {
    fail('BAD_REQUEST', 'body is not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) fail('BAD_REQUEST', 'malformed request body');
  return r.data;
}

/** A path parameter checked by `schema`. @throws LatchkeyError BAD_REQUEST otherwise. */
export function param(req: FastifyRequest, name: string, schema: z.ZodType<string>): string {
  const v = (req.params as Record<string, unknown>)[name];
  if (!schema.safeParse(v).success) fail('BAD_REQUEST', `invalid ${name}`);
  return v as string;
}
