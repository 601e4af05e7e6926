/**
 * The key service over HTTP (DESIGN.md "Trust and tokens"; docs/protocol.md "Key service";
 * bodies from @latchkey/protocol http.ts). It hands the content key of the token's contact, and
 * only that contact, to a holder of a valid participant token, and certifies the caller's
 * session signing key. Every error is `{ error: { code, message } }` with the HTTP status of
 * ERROR_CODES. Tokens, keys and bodies are never logged; every response is `no-store`.
 *
 * This file is the server (transports, body parsing, CORS, health and service key); the member
 * routes are in member-routes.ts, the admin API in admin.ts, the wire errors in http-errors.ts.
 */
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { toBase64Url } from '@latchkey/crypto/codec';
import { signingPublicKey } from '@latchkey/crypto/sign';
import { SqliteAccessStore, type AccessTable, type KeyManager } from '@latchkey/keys';
import {
  ERROR_CODES,
  KEYS_PATHS,
  LIMITS,
  LatchkeyError,
  MAX_TOKEN_TTL_SECONDS,
  type Principal,
  type ServiceKeyResponse,
} from '@latchkey/protocol';
import {
  createTokenVerifier,
  deriveAdminKey,
  ipAllowed,
  normaliseIp,
  parseIpAllowlist,
  type AdminKey,
  type TokenVerifierOptions,
} from '@latchkey/tokens';
import { registerAdminRoutes } from './admin.ts';
import { frameworkError, sendError } from './http-errors.ts';
import { KeyPolicy } from './key-policy.ts';
import { registerLimits, type KeyServiceLimits } from './limits.ts';
import { loggerOptions } from './logger.ts';
import { registerMemberRoutes } from './member-routes.ts';
import {
  keyCacheHealth,
  renderDegradedCacheMetrics,
  type DegradedCacheStatus,
} from './degraded-status.ts';

/** Pending connections the kernel queues before the service accepts them. */
const LISTEN_BACKLOG = 4096;

export interface KeyServiceOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /**
   * The API secret that signs HS256 participant tokens (at least 32 bytes), the dev default.
   * Give `tokenPublicKey` instead (or as well) for EdDSA tokens.
   */
  apiSecret?: Uint8Array;
  /** Ed25519 public key (KeyObject, SPKI PEM or JWK) that verifies EdDSA participant tokens. */
  tokenPublicKey?: TokenVerifierOptions['ed25519PublicKey'];
  /**
   * Membership and deny table: who may receive a contact's keys. Default: an in-memory table
   * (openKeyService passes `keys/access.db` or the PostgreSQL table); the caller keeps ownership
   * of one it passes.
   */
  access?: AccessTable;
  /**
   * API keys of the admin API (`/admin/v1`). Default: the key derived from `apiSecret`; with
   * neither, there is no admin API.
   */
  adminKeys?: AdminKey[];
  /** IPs/CIDR ranges allowed to reach the admin API (default: loopback only). */
  adminIpAllowlist?: readonly string[];
  keyManager: KeyManager;
  /**
   * Rotation, access log and shredding around each hand-out (key-policy.ts). Default: a policy
   * over `keyManager` without log or schedule (openKeyService passes the full one).
   */
  policy?: KeyPolicy;
  /** The service's Ed25519 secret key (32-byte seed) that signs sender certificates. */
  signingKey: Uint8Array;
  /** Longest certificate lifetime; a certificate never outlives its token. Default 24 h. */
  certTtlSeconds?: number;
  /**
   * Fastify logger: false (default), true, or pino options (e.g. `{ level: 'warn' }`). Requests
   * are logged as method, path and status only; the authorization header is always redacted.
   */
  logger?: boolean | Record<string, unknown>;
  /**
   * Browser origins allowed to call the service (CORS), e.g. `['https://support.example.com']`.
   * Default: any origin, which suits development; production should list its web origins.
   * A request carrying an Origin not on the list is refused with FORBIDDEN.
   */
  allowedOrigins?: string[];
  /** Serve HTTPS with this certificate and key (PEM); the URL then starts with https://. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Hand content keys out in plain (no `delivery` key in the request). Default: only with `tls`;
   * over plain HTTP a request without a delivery key is refused (BAD_REQUEST), so a key never
   * crosses the wire unsealed. Set it for a deployment that terminates TLS in front.
   */
  allowPlainKeyDelivery?: boolean;
  /** Registers more routes before the server listens (openKeyService: master-key rotation). */
  extraRoutes?: (app: FastifyInstance) => void;
  /**
   * Degraded mode (degraded-cache.ts): its state in `/healthz` (`keyCache`) and `/metrics`.
   * Absent: no `keyCache` field and no key-cache metrics.
   */
  keyCache?: { status(): DegradedCacheStatus };
  /** Who may read `/metrics` (default loopback only). */
  metricsIpAllowlist?: readonly string[];
  /** Connection caps, timeouts and rate limits (limits.ts); unset ones from LATCHKEY_KEYS_* or defaults. */
  limits?: Partial<KeyServiceLimits>;
}

export interface KeyService {
  /** e.g. `http://127.0.0.1:8471` */
  url: string;
  port: number;
  /** The Ed25519 public key that signs certificates, base64url (what GET /v1/service-key says). */
  servicePublicKey: string;
  /** Stops accepting requests and waits for those in flight. Does not close the key manager. */
  close(): Promise<void>;
}

/**
 * Starts the key service and resolves once it listens.
 * @throws RangeError for a signing key that is not 32 bytes, an API secret under 32 bytes or
 *   a certificate lifetime outside 1 s .. 24 h; the listen error when the port is taken.
 */
export async function startKeyService(opts: KeyServiceOptions): Promise<KeyService> {
  if (
    opts.apiSecret !== undefined &&
    (!(opts.apiSecret instanceof Uint8Array) || opts.apiSecret.length < 32)
  ) {
    throw new RangeError('API secret must be at least 32 bytes');
  }
  const verifier = createTokenVerifier({
    ...(opts.apiSecret === undefined ? {} : { hs256Secret: opts.apiSecret }),
    ...(opts.tokenPublicKey === undefined ? {} : { ed25519PublicKey: opts.tokenPublicKey }),
  });
  const adminKeys =
    opts.adminKeys ?? (opts.apiSecret === undefined ? [] : [deriveAdminKey(opts.apiSecret)]);
  const access = opts.access ?? new SqliteAccessStore({ path: ':memory:' });
  const servicePublicKey = toBase64Url(signingPublicKey(opts.signingKey));
  const certTtlSeconds = opts.certTtlSeconds ?? MAX_TOKEN_TTL_SECONDS;
  if (
    !Number.isInteger(certTtlSeconds) ||
    certTtlSeconds < 1 ||
    certTtlSeconds > MAX_TOKEN_TTL_SECONDS
  ) {
    throw new RangeError(`certTtlSeconds must be 1..${MAX_TOKEN_TTL_SECONDS}`);
  }
  const { keyManager, signingKey } = opts;
  const policy = opts.policy ?? new KeyPolicy({ keyManager });
  const allowed = opts.allowedOrigins === undefined ? null : new Set(opts.allowedOrigins);
  const principals = new WeakMap<FastifyRequest, Principal>();

  const common = {
    logger: loggerOptions(opts.logger),
    bodyLimit: LIMITS.maxHttpBodyBytes,
    return503OnClosing: true,
    frameworkErrors: (err: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
      void sendError(reply, frameworkError(err));
    },
  };
  // One instance type for both transports: the routes do not depend on it.
  const app = (opts.tls
    ? Fastify({
        ...common,
        https: { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' },
      })
    : Fastify(common)) as unknown as FastifyInstance;
  registerLimits(app, opts.limits, (req) => principals.get(req));

  // Only JSON bodies. Our own parser so a syntax error (whose message quotes the body) never
  // reaches a log, and an empty body means "{}".
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text) as unknown);
    } catch {
      done(new LatchkeyError('BAD_REQUEST', 'request body is not valid JSON'), undefined);
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const e = LatchkeyError.is(err) ? err : frameworkError(err);
    if (ERROR_CODES[e.code].http >= 500) {
      req.log.warn({ code: e.code, detail: e.detail }, 'request failed');
    }
    return sendError(reply, e);
  });
  app.setNotFoundHandler((_req, reply) =>
    sendError(reply, new LatchkeyError('NOT_FOUND', 'no such endpoint')),
  );

  // Headers of every response, and CORS (https://fetch.spec.whatwg.org/#http-cors-protocol).
  app.addHook('onRequest', async (req, reply) => {
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    const origin = req.headers.origin;
    if (origin === undefined) return;
    if (allowed === null) {
      reply.header('access-control-allow-origin', '*');
    } else {
      reply.header('vary', 'Origin');
      if (!allowed.has(origin)) throw new LatchkeyError('FORBIDDEN', 'origin not allowed');
      reply.header('access-control-allow-origin', origin);
    }
  });

  // Preflight for any path: POST with Authorization and Content-Type.
  app.options('*', async (_req, reply) =>
    reply
      .code(204)
      .header('access-control-allow-methods', 'GET, POST, OPTIONS')
      .header('access-control-allow-headers', 'Authorization, Content-Type')
      .header('access-control-max-age', '600')
      .send(),
  );

  // docs/key-management.md "Diagnostics": the backend and its last failure (when, HTTP status,
  // code, reason; never a secret or contact id), so an operator sees why keys are unavailable.
  app.get(KEYS_PATHS.health, async (_req, reply) => {
    const h = await keyManager
      .health()
      .catch(() => ({ status: 'degraded' as const, backend: 'unknown', lastError: undefined }));
    const last = h.lastError;
    // After health(): a key manager that answers again ends degraded mode first.
    const kc = opts.keyCache && keyCacheHealth(opts.keyCache.status());
    return reply.code(h.status === 'ok' ? 200 : 503).send({
      status: h.status,
      backend: h.backend,
      ...(kc === undefined ? {} : { keyCache: kc }),
      ...(last === undefined
        ? {}
        : {
            lastError: {
              at: new Date(last.at).toISOString(),
              ...(last.status === undefined ? {} : { status: last.status }),
              ...(last.code === undefined ? {} : { code: last.code }),
              reason: last.reason,
            },
          }),
    });
  });

  // Prometheus text (docs/key-management.md "Degraded mode"), loopback only by default.
  const metricsAllow = parseIpAllowlist(opts.metricsIpAllowlist ?? ['127.0.0.0/8', '::1']);
  app.get('/metrics', async (req, reply) => {
    if (!ipAllowed(metricsAllow, normaliseIp(req.socket.remoteAddress)))
      throw new LatchkeyError('FORBIDDEN', 'metrics are not served to this address');
    const body = opts.keyCache ? renderDegradedCacheMetrics(opts.keyCache.status()) : '';
    return reply.type('text/plain; version=0.0.4').send(body);
  });

  app.get(KEYS_PATHS.serviceKey, async () => {
    const body: ServiceKeyResponse = { alg: 'Ed25519', publicKey: servicePublicKey };
    return body;
  });

  registerMemberRoutes(app, {
    verifier,
    access,
    policy,
    principals,
    signingKey,
    certTtlSeconds,
    plainAllowed: opts.allowPlainKeyDelivery ?? opts.tls !== undefined,
  });

  if (adminKeys.length > 0)
    registerAdminRoutes(app, {
      access,
      keyManager,
      policy,
      keys: adminKeys,
      onError: sendError,
      ...(opts.adminIpAllowlist === undefined ? {} : { ipAllowlist: opts.adminIpAllowlist }),
    });

  opts.extraRoutes?.(app);
  // A join burst (every client of a relay reconnecting after an outage) opens its connections at
  // once; Node's default listen backlog (511) overflows while the loop is busy, and each dropped
  // SYN costs its client a 1 s retransmission. The kernel caps it at net.core.somaxconn.
  await app.listen({ host: opts.host, port: opts.port, backlog: LISTEN_BACKLOG });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host}:${port}`,
    port,
    servicePublicKey,
    close: async () => {
      await app.close();
      if (opts.access === undefined) await access.close();
    },
  };
}
