/**
 * The reference External Key Manager (docs/key-manager-api.yaml): what an enterprise runs so
 * that Latchkey's key service uses the enterprise's key-encryption key, as a template and for
 * the tests. Every request must carry a valid HMAC-SHA256 signature (timestamp window, nonce
 * never seen) and is audited (who, what, which contact and epoch, why, outcome; never a key).
 * Refusing an unwrap (`revoke`) is how the enterprise revokes or shreds a contact.
 *
 * This file is the server: transports, signature check, audit and error shape; the routes are
 * in wrap-routes.ts and store-routes.ts.
 */
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { ERROR_CODES, LatchkeyError, type ErrorCode } from '@latchkey/protocol';
import {
  createKmRequestVerifier,
  type KmErrorResponse,
  type KmHealthResponse,
} from '@latchkey/keys';
import { fail, type Pending, type RouteContext } from './_request.ts';
import { storeRoutes } from './store-routes.ts';
import { KmsStore, type AuditEntry } from './store.ts';
import { wrapRoutes } from './wrap-routes.ts';

export interface KmsOptions {
  /** The key manager's SQLite file. */
  path: string;
  /** 32-byte root secret from which the KEK versions are derived. */
  rootKey: Uint8Array;
  /** HMAC secret (at least 32 bytes) of each client id allowed to call. */
  clients: Readonly<Record<string, Uint8Array>>;
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Accepted clock difference of signed requests (default 5 minutes). */
  windowMs?: number;
  /** Serve HTTPS; with `ca` and `requestCert`, require a client certificate (mutual TLS). */
  tls?: {
    cert: string | Buffer;
    key: string | Buffer;
    ca?: string | Buffer;
    requestCert?: boolean;
  };
  logger?: boolean;
  now?: () => number;
}

export interface Kms {
  url: string;
  port: number;
  /** Adds a new version of a KEK; new wraps use it, `rewrap` moves old wraps to it. */
  rotateKey(keyId: string): number;
  /** Refuses every later unwrap and key-store read of the contact (FORBIDDEN). */
  revoke(contactId: string): void;
  /** `METHOD /path/{param}` of every route served (to check against the OpenAPI document). */
  routes: readonly string[];
  /** The request audit, oldest first. */
  audit(): AuditEntry[];
  close(): Promise<void>;
}

const MESSAGE_MAX = 200;

/**
 * Starts the key manager and resolves once it listens.
 * @throws RangeError for a root key that is not 32 bytes or a client secret under 32 bytes.
 */
export async function startKms(opts: KmsOptions): Promise<Kms> {
  const now = opts.now ?? Date.now;
  const secrets = new Map<string, Uint8Array>();
  for (const [id, s] of Object.entries(opts.clients)) {
    if (s.length < 32) throw new RangeError(`secret of ${id} must be at least 32 bytes`);
    secrets.set(id, Uint8Array.from(s));
  }
  const store = new KmsStore(opts.path, opts.rootKey, now);
  const verify = createKmRequestVerifier({
    secrets,
    now,
    rememberNonce: (n, exp) => store.rememberNonce(n, exp),
    ...(opts.windowMs === undefined ? {} : { windowMs: opts.windowMs }),
  });
  const common = {
    logger: opts.logger ?? false,
    bodyLimit: 16 * 1024,
    return503OnClosing: true,
  } as const;
  // One instance type for both transports: the routes do not depend on it.
  const app = (opts.tls
    ? Fastify({
        ...common,
        https: {
          cert: opts.tls.cert,
          key: opts.tls.key,
          minVersion: 'TLSv1.2' as const,
          ...(opts.tls.ca === undefined ? {} : { ca: opts.tls.ca }),
          ...(opts.tls.requestCert === true ? { requestCert: true, rejectUnauthorized: true } : {}),
        },
      })
    : Fastify(common)) as unknown as FastifyInstance;

  const routes: string[] = [];
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    for (const m of methods)
      if (m !== 'HEAD') routes.push(`${m} ${r.url.replace(/:(\w+)/g, '{$1}')}`);
  });

  const pending = new WeakMap<FastifyRequest, Pending>();
  const note = (req: FastifyRequest, p: Partial<Pending>): void => {
    const cur = pending.get(req) ?? {
      clientId: null,
      operation: 'unknown',
      contactId: null,
      epoch: null,
      reason: null,
    };
    pending.set(req, { ...cur, ...p });
  };

  // Keep the raw bytes: the signature covers them exactly.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );

  app.addHook('preHandler', async (req) => {
    const body = req.body instanceof Buffer ? req.body : Buffer.alloc(0);
    const r = verify({ method: req.method, path: req.url, body }, req.headers);
    if (!r.ok) {
      note(req, { operation: 'auth', reason: r.reason });
      throw new LatchkeyError(
        r.code,
        r.code === 'AUTH_EXPIRED'
          ? 'request timestamp outside the window'
          : 'request not authenticated',
      );
    }
    note(req, { clientId: r.clientId });
  });

  // Audited before the answer leaves (onSend), so an unwrap the caller got is always on record,
  // even if this process is killed right after.
  app.addHook('onSend', async (req, reply, payload) => {
    const p = pending.get(req);
    try {
      store.audit({
        time: now(),
        clientId: p?.clientId ?? null,
        method: req.method,
        path: req.routeOptions.url ?? req.url.split('?')[0] ?? '',
        operation: p?.operation ?? 'unknown',
        contactId: p?.contactId ?? null,
        epoch: p?.epoch ?? null,
        reason: p?.reason ?? null,
        status: reply.statusCode,
        outcome: reply.statusCode < 400 ? 'ok' : 'refused',
      });
    } catch {
      // A closed store at shutdown is not an error for the answer itself.
    }
    return payload;
  });

  app.setErrorHandler((err: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
    let code: ErrorCode;
    let message: string;
    if (LatchkeyError.is(err)) {
      code = err.code;
      message = err.message;
    } else if (err instanceof AuthenticationError) {
      code = 'DECRYPT_FAILED';
      message = 'wrapped key does not authenticate under this key and context';
    } else if (err.statusCode === 413) {
      code = 'TOO_LARGE';
      message = 'body too large';
    } else if (
      typeof err.statusCode === 'number' &&
      err.statusCode >= 400 &&
      err.statusCode < 500
    ) {
      code = 'BAD_REQUEST';
      message = 'bad request';
    } else {
      code = 'INTERNAL';
      message = 'internal error';
    }
    const body: KmErrorResponse = { error: { code, message: message.slice(0, MESSAGE_MAX) } };
    return reply.code(ERROR_CODES[code].http).header('cache-control', 'no-store').send(body);
  });
  app.setNotFoundHandler((_req, reply) => {
    const body: KmErrorResponse = { error: { code: 'NOT_FOUND', message: 'no such route' } };
    return reply.code(404).send(body);
  });
  app.addHook('onSend', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
  });

  const refuseRevoked = (contactId: string, keyId?: string): void => {
    if (store.isRevoked(contactId)) fail('FORBIDDEN', 'refused by policy');
    if (keyId !== undefined && store.isDestroyed(keyId, contactId))
      fail('FORBIDDEN', 'contact destroyed');
  };

  app.get('/v1/health', async (req): Promise<KmHealthResponse> => {
    note(req, { operation: 'health' });
    store.db.prepare('SELECT 1').get();
    return { status: 'ok' };
  });

  const ctx: RouteContext = { store, note, refuseRevoked };
  wrapRoutes(app, ctx);
  storeRoutes(app, ctx);

  const host = opts.host ?? '127.0.0.1';
  try {
    await app.listen({ host, port: opts.port ?? 0 });
  } catch (err) {
    store.close();
    throw err;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  let closed = false;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    routes,
    rotateKey: (keyId) => store.rotateKey(keyId),
    revoke: (contactId) => store.revoke(contactId),
    audit: () => store.auditLog(),
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      store.close();
      for (const s of secrets.values()) s.fill(0);
    },
  };
}
