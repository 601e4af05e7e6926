/**
 * Child process: a round-robin TCP balancer on 127.0.0.1 in front of the processes of the
 * cluster benchmark (the one tests/integration/cluster.test.ts puts in front of relays and key
 * services): each accepted connection is piped to the next backend port in turn. A process of
 * its own, so that its CPU is counted apart from the key services behind it.
 */
import { connect, createServer, type Socket } from 'node:net';
import { childConfig, procStats, serve } from '../ipc.ts';

interface Config {
  ports: number[];
}

const { ports } = childConfig<Config>();
const sockets = new Set<Socket>();
let next = 0;
const server = createServer((client) => {
  sockets.add(client);
  client.on('close', () => sockets.delete(client));
  client.pause();
  const upstream = connect(ports[next++ % ports.length] as number, '127.0.0.1');
  sockets.add(upstream);
  upstream.on('close', () => sockets.delete(upstream));
  upstream.setNoDelay(true);
  client.setNoDelay(true);
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.once('connect', () => {
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
});
// As the relay and key service: 1,000 joins at once overflow Node's default backlog of 511.
await new Promise<void>((resolve) =>
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve),
);

serve(
  { port: (server.address() as { port: number }).port, pid: process.pid },
  { stats: () => procStats() },
  async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  },
);
