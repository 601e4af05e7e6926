/**
 * Child process: Socket.IO rooms, what many teams would pick instead. Clients connect over the
 * WebSocket transport only with `?room=ID`; every `m` event is re-emitted to the rest of the
 * room (`socket.to(room).emit`). No auth, no storage, no crypto.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { procStats, serve } from '../ipc.ts';

const server = createServer();
const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
});
let connections = 0;

io.on('connection', (socket) => {
  const q = socket.handshake.query['room'];
  const room = typeof q === 'string' ? q : '';
  void socket.join(room);
  connections++;
  socket.on('m', (data: string) => {
    socket.to(room).emit('m', data);
  });
  socket.on('disconnect', () => {
    connections--;
  });
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const addr = server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;

serve(
  { port },
  { stats: (p: { gc?: boolean }) => ({ ...procStats(p.gc === true), connections }) },
  async () => {
    await new Promise<void>((resolve) => {
      void io.close(() => resolve());
    });
  },
);
