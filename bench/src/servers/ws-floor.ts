/**
 * Child process: the floor. A bare `ws` server that forwards every text frame to the other
 * sockets of its room (`/?room=ID`): no auth, no validation, no storage, no crypto. Whatever
 * this does per message is the least any Node WebSocket relay must pay.
 */
import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { procStats, serve } from '../ipc.ts';

const rooms = new Map<string, Set<WebSocket>>();
const server = createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });
let connections = 0;

wss.on('connection', (ws, req) => {
  const room = new URL(req.url ?? '/', 'http://x').searchParams.get('room') ?? '';
  let set = rooms.get(room);
  if (!set) rooms.set(room, (set = new Set()));
  set.add(ws);
  connections++;
  const members = set;
  ws.on('message', (data, isBinary) => {
    for (const other of members) if (other !== ws) other.send(data, { binary: isBinary });
  });
  ws.on('close', () => {
    connections--;
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
  });
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const addr = server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;

serve(
  { port },
  { stats: (p: { gc?: boolean }) => ({ ...procStats(p.gc === true), connections }) },
  async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => wss.close(() => server.close(() => resolve())));
  },
);
