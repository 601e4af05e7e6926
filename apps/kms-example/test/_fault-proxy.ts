/** A proxy in front of the key manager that can be down, slow, or answer garbage. */
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultMode =
  | 'pass'
  | 'slow'
  | 'garbage'
  | 'bad-json'
  | 'error500'
  | 'reset'
  /** Every route answers 404 NOT_FOUND (a key manager without it). */
  | 'not-found';

export interface FaultProxy {
  url: string;
  mode: FaultMode;
  slowMs: number;
  /** Requests that reached the proxy. */
  hits: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const sockets = new Set<Socket>();
  const state = { mode: 'pass' as FaultMode, slowMs: 3000, hits: 0 };
  const forward = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const up = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  };
  const server = http.createServer((req, res) => {
    state.hits++;
    switch (state.mode) {
      case 'pass':
        return forward(req, res);
      case 'slow': {
        const timer = setTimeout(() => forward(req, res), state.slowMs);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ key: 'definitely not a key', wrapped: 42 }));
      case 'bad-json':
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end('<html>proxy error</html>');
      case 'error500':
        res.writeHead(500, { 'content-type': 'text/plain' });
        return void res.end('boom');
      case 'reset':
        return void req.socket.destroy();
      case 'not-found':
        res.writeHead(404, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no route' } }));
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const stop = async (): Promise<void> => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return {
    url: `http://127.0.0.1:${port}`,
    get mode() {
      return state.mode;
    },
    set mode(m: FaultMode) {
      state.mode = m;
    },
    get slowMs() {
      return state.slowMs;
    },
    set slowMs(v: number) {
      state.slowMs = v;
    },
    get hits() {
      return state.hits;
    },
    set hits(v: number) {
      state.hits = v;
    },
    down: stop,
    up: () => new Promise<void>((r) => server.listen(port, '127.0.0.1', r)),
    close: async () => {
      if (server.listening) await stop();
    },
  };
}
