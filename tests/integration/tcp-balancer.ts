/**
 * A round-robin TCP balancer on 127.0.0.1 for the multi-process tests (scale-out.test.ts,
 * cluster.test.ts), standing in for HAProxy in TCP mode: each connection is piped to the next
 * backend that accepts one (a dead backend is skipped).
 */
import { connect, createServer, type Socket } from 'node:net';

export interface TcpBalancer {
  port: number;
  /** Ends every piped connection and stops listening. */
  close(): Promise<void>;
}

/** Starts a balancer over the ports `backends()` names at each new connection. */
export async function startTcpBalancer(backends: () => readonly number[]): Promise<TcpBalancer> {
  const sockets = new Set<Socket>();
  let next = 0;
  const lb = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    const ports = backends();
    const tryNext = (left: number): void => {
      if (left === 0) {
        client.destroy();
        return;
      }
      const upstream = connect(ports[next++ % ports.length] as number, '127.0.0.1');
      upstream.once('error', () => tryNext(left - 1));
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        sockets.add(upstream);
        upstream.on('close', () => sockets.delete(upstream));
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryNext(ports.length);
  });
  await new Promise<void>((resolve) => lb.listen(0, '127.0.0.1', resolve));
  return {
    port: (lb.address() as { port: number }).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => lb.close(r));
    },
  };
}
