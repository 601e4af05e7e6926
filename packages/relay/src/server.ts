/**
 * Accepting connections: the upgrade handler that admits a WebSocket handshake (origin/IP
 * allowlists and per-IP limits of admission.ts, checked before the handshake), and the HTTP(S)
 * server `listen` starts when the relay has none to attach to: TLS 1.2 at least, a cap on open
 * connections, header and request timeouts so that half-sent requests do not hold file
 * descriptors. A request that is not the admin API or an ops endpoint gets 426.
 */
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import { clientIp, refuseUpgrade, type Admission } from './admission.ts';
import type { RelayLogEvent, TlsOptions } from './options.ts';

export interface UpgradeDeps {
  admission: Pick<Admission, 'admit' | 'release'>;
  wss: Pick<WebSocketServer, 'handleUpgrade'>;
  log: (event: RelayLogEvent) => void;
  closing: () => boolean;
  onConnection: (ws: WebSocket, ip: string, socket: Duplex) => void;
}

/** The `upgrade` listener of an HTTP(S) server: admits the handshake, or refuses it. */
export function upgradeHandler(
  deps: UpgradeDeps,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { admission, log } = deps;
  return (req, socket, head) => {
    if (deps.closing()) {
      socket.destroy();
      return;
    }
    const ip = clientIp(req);
    const refused = admission.admit(req, ip);
    if (refused) {
      log({ event: 'upgrade-refused', code: refused.code });
      refuseUpgrade(socket, refused);
      return;
    }
    // The TCP socket outlives every path (refused handshake, open, closed), so it releases.
    socket.once('close', () => admission.release(ip));
    try {
      deps.wss.handleUpgrade(req, socket, head, (ws) => deps.onConnection(ws, ip, socket));
    } catch (err) {
      log({ event: 'upgrade-failed', detail: err instanceof Error ? err.message : 'unknown' });
      socket.destroy();
    }
  };
}

/** Pending connections the kernel queues for accept (capped by net.core.somaxconn). */
export const LISTEN_BACKLOG = 4096;

/** Creates (does not start) the server; `handleHttp` answers what it can. */
export function createOwnServer(
  tls: TlsOptions | undefined,
  maxConnections: number,
  handleHttp: (req: IncomingMessage, res: ServerResponse) => boolean,
): HttpServer {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (handleHttp(req, res)) return;
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
    res.end('WebSocket upgrade required\n');
  };
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, onRequest)
    : createServer(onRequest);
  server.maxConnections = maxConnections;
  server.headersTimeout = 10_000;
  server.requestTimeout = 20_000;
  server.keepAliveTimeout = 5_000;
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = 2_500;
  return server;
}

/**
 * Binds the server and returns the WebSocket URL it serves.
 * @throws Error when the address cannot be bound (e.g. EADDRINUSE).
 */
export async function listenOn(
  server: HttpServer,
  o: { host: string; port: number; tls?: TlsOptions },
  log: (event: RelayLogEvent) => void,
): Promise<{ url: string; port: number }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A backlog of 4,096 (Node's default is 511): a burst of reconnects after an outage must
    // not overflow it, since each dropped SYN costs its client a one-second retransmit.
    server.listen({ port: o.port, host: o.host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log({ event: 'server-error', detail: err.message }));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  log({ event: 'listening', port });
  return { url: `${o.tls ? 'wss' : 'ws'}://${host}:${port}`, port };
}
