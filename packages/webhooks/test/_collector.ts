/** An in-process HTTP receiver that records every call (path, webhook-id, body) and answers 200. */
import { createServer, type Server } from 'node:http';

export interface Call {
  path: string;
  id: string;
  sequence: number;
  body: string;
  at: number;
}

export interface Collector {
  base: string;
  calls: Call[];
  /** Resolves once `n` calls arrived in all (never a fixed sleep). */
  waitFor(n: number, ms?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * @param hold paths whose first call is received (and recorded) but never answered, as when the
 *   sender dies mid-call.
 */
export async function startCollector(hold: readonly string[] = []): Promise<Collector> {
  const held = new Set<string>();
  const calls: Call[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const parsed = JSON.parse(body) as { sequence: number };
      calls.push({
        path: req.url ?? '',
        id: String(req.headers['webhook-id']),
        sequence: parsed.sequence,
        body,
        at: Date.now(),
      });
      const path = req.url ?? '';
      if (hold.includes(path) && !held.has(path)) held.add(path);
      else res.writeHead(200).end('ok');
      for (const w of waiters.filter((w) => calls.length >= w.n)) w.resolve();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    base: `http://127.0.0.1:${port}`,
    calls,
    waitFor: (n, ms = 20_000) =>
      new Promise<void>((resolve, reject) => {
        if (calls.length >= n) return resolve();
        const timer = setTimeout(
          () => reject(new Error(`timed out: ${calls.length} of ${n} calls`)),
          ms,
        );
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
