/**
 * The web server: serves the built widget, agent console, demo and landing pages (Vite output
 * in `dist/`, built on start when missing or stale) and, in development, the demo backend that
 * mints tokens server-side (demo-backend.ts).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { assertSecureListener } from '@latchkey/protocol';
import { DEFAULT_DIST, ensureBuilt } from './build.ts';
import { DemoBackend } from './demo-backend.ts';
import { registerWebLimits, type WebLimits } from './limits.ts';

export interface WebOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The API secret that signs participant tokens; used by the demo backend only, server-side. */
  apiSecret: Uint8Array;
  /** The relay as browsers reach it, e.g. `ws://127.0.0.1:8470`. */
  relayUrl: string;
  /** The key service as browsers reach it, e.g. `http://127.0.0.1:8471`. */
  keysUrl: string;
  /** The key service's Ed25519 public key (base64url), pinned by every browser client. */
  serviceKey: string;
  /**
   * The deployment runs a virus scanner on attachments (default false): browsers are told so in
   * their session (`scanning`), and a file stays blocked ("Scanning…") until its verdict is clean.
   */
  scanning?: boolean;
  /** Serve the demo backend (default true). It answers loopback clients only. */
  demoBackend?: boolean;
  /** Where the build lives (default `apps/web/dist`); rebuilt when stale. */
  distDir?: string;
  /** Demo token lifetime in seconds (default 1 h). */
  tokenTtlSeconds?: number;
  logger?: boolean;
  /** PEM certificate and key files: serve https:// (with HSTS) instead of http://. */
  tls?: { certFile: string; keyFile: string };
  /** Allow plain http:// on a non-loopback address (TLS terminated in front). */
  insecure?: boolean;
  /**
   * Development mode: the bundles are built with source maps and served with them. Default
   * false: nothing served carries a `.map` file or a `sourceMappingURL`.
   */
  development?: boolean;
  /** Connection caps, timeouts and request rate (limits.ts); unset ones from LATCHKEY_WEB_* or defaults. */
  limits?: Partial<WebLimits>;
}

export interface RunningWeb {
  /** e.g. `http://127.0.0.1:8472` */
  url: string;
  /** The demo visitor page, opening the ready demo conversation (the demo key in its fragment). */
  visitorUrl: string;
  /** The agent console with the ready demo conversation selected (the demo key in its fragment). */
  agentUrl: string;
  port: number;
  /** The demo backend (null when disabled). */
  demo: DemoBackend | null;
  close(): Promise<void>;
}

function origin(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

/** The relay's HTTP origin (its file API) for its WebSocket URL: ws→http, wss→https. */
function httpOrigin(url: string): string {
  const u = new URL(url);
  const scheme = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  return `${scheme}//${u.host}`;
}

/**
 * Builds the bundles if needed and starts the server.
 * @throws the listen error when the port is taken; the Vite error when the build fails.
 */
export async function startWeb(opts: WebOptions): Promise<RunningWeb> {
  assertSecureListener('web', opts.host, {
    tls: opts.tls !== undefined,
    insecure: opts.insecure === true,
  });
  const tls = opts.tls && {
    cert: await readFile(opts.tls.certFile),
    key: await readFile(opts.tls.keyFile),
  };
  const dist = opts.distDir ?? DEFAULT_DIST;
  const development = opts.development === true;
  await ensureBuilt(dist, { development });
  // forceCloseConnections: a browser tab holding a keep-alive socket must not stall shutdown.
  const common = {
    logger: opts.logger ?? false,
    bodyLimit: 16 * 1024,
    forceCloseConnections: true,
  };
  const app = (tls
    ? Fastify({ ...common, https: { ...tls, minVersion: 'TLSv1.2' as const } })
    : Fastify(common)) as unknown as FastifyInstance;
  registerWebLimits(app, opts.limits);

  // Pages may talk to their own origin, the relay (socket and file API) and the key service, and
  // run only our scripts. Attachment previews are object URLs of decrypted thumbnails (`blob:`).
  const csp = [
    "default-src 'self'",
    `connect-src 'self' ${origin(opts.relayUrl)} ${httpOrigin(opts.relayUrl)} ${origin(opts.keysUrl)}`,
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
  ].join('; ');
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    if (tls) reply.header('strict-transport-security', 'max-age=31536000; includeSubDomains');
    if (req.url !== '/widget.js' && !req.url.startsWith('/widget.js?')) {
      // The widget script is embedded by other sites; the pages are framed by nobody.
      reply.header('content-security-policy', `${csp}; frame-ancestors 'none'`);
      reply.header('x-frame-options', 'DENY');
    } else {
      reply.header('access-control-allow-origin', '*');
    }
  });

  // Source maps only in development; a stray one in dist/ is not served either.
  if (!development) {
    app.addHook('onRequest', async (req, reply) => {
      if (/\.map(?:$|\?)/.test(req.url))
        await reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'not found' } });
    });
  }
  await app.register(fastifyStatic, {
    root: dist,
    index: false,
    wildcard: true,
    cacheControl: false,
  });

  let demo: DemoBackend | null = null;
  if (opts.demoBackend !== false) {
    demo = new DemoBackend({
      apiSecret: opts.apiSecret,
      relayUrl: opts.relayUrl,
      keysUrl: opts.keysUrl,
      serviceKey: opts.serviceKey,
      scanning: opts.scanning === true,
      ...(opts.tokenTtlSeconds === undefined ? {} : { tokenTtlSeconds: opts.tokenTtlSeconds }),
    });
    demo.register(app);
  }

  const page = (file: string) => async (_req: unknown, reply: FastifyReply) =>
    reply.header('cache-control', 'no-cache').type('text/html; charset=utf-8').sendFile(file);
  app.get('/', page('index.html'));
  app.get('/agent', page('agent.html'));
  // The demo page asks for a given contact when the URL names a known open one.
  app.get<{ Querystring: { contact?: string } }>('/demo', async (req, reply) => {
    let html = await readFile(join(dist, 'demo.html'), 'utf8');
    const c = demo?.openContact(req.query.contact);
    if (c) {
      // contactId matches [A-Za-z0-9_-]{1,64}: safe inside an attribute.
      html = html.replace('data-session-url=', `data-contact="${c.contactId}" data-session-url=`);
    }
    return reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(html);
  });

  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const hostPart = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `${tls ? 'https' : 'http'}://${hostPart}:${port}`;
  const ready = demo?.createContact();
  const q = ready ? `?contact=${ready.contactId}` : '';
  // The demo key rides in the fragment: browsers never send it to a server or in a Referer.
  const withKey = (u: string): string => (demo ? demo.withKey(u) : u);
  return {
    url,
    visitorUrl: withKey(`${url}/demo${q}`),
    agentUrl: withKey(`${url}/agent${q}`),
    port,
    demo,
    async close() {
      await app.close();
    },
  };
}
