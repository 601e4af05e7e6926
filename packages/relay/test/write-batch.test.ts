/**
 * WriteBatch: a socket is corked once per loop turn however many frames it gets, and every
 * held socket is uncorked once the turn's callbacks and microtasks have run, even when one of
 * them throws. Over a real WebSocket pair, frames sent in one turn arrive complete and in order.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { WriteBatch, type Corkable } from '../src/write-batch.ts';

function counting(failUncork = false): Corkable & { corks: number; uncorks: number } {
  return {
    corks: 0,
    uncorks: 0,
    cork() {
      this.corks++;
    },
    uncork() {
      this.uncorks++;
      if (failUncork) throw new Error('destroyed');
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('WriteBatch', () => {
  let server: Server | undefined;
  afterEach(() => {
    server?.close();
    server = undefined;
  });

  it('corks each socket once per turn and uncorks it after the turn', async () => {
    const batch = new WriteBatch();
    const a = counting();
    const b = counting();
    for (let i = 0; i < 5; i++) batch.hold(a);
    batch.hold(b);
    await Promise.resolve();
    batch.hold(a); // a microtask of the same turn
    expect([a.corks, a.uncorks, b.corks, b.uncorks]).toEqual([1, 0, 1, 0]);
    await tick();
    expect([a.corks, a.uncorks, b.corks, b.uncorks]).toEqual([1, 1, 1, 1]);
    batch.hold(a); // the next turn corks again
    await tick();
    expect([a.corks, a.uncorks]).toEqual([2, 2]);
  });

  it('uncorks the other sockets when one of them throws', async () => {
    const batch = new WriteBatch();
    const bad = counting(true);
    const good = counting();
    batch.hold(bad);
    batch.hold(good);
    await tick();
    expect(good.uncorks).toBe(1);
  });

  it('holds a real socket corked through the turn; the frames arrive complete, in order', async () => {
    const batch = new WriteBatch();
    server = createServer();
    const wss = new WebSocketServer({ noServer: true });
    const corked: number[] = [];
    server.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        for (let i = 0; i < 200; i++) {
          batch.hold(socket);
          ws.send(`frame ${i}`);
        }
        corked.push((socket as Duplex).writableCorked);
        setImmediate(() => corked.push((socket as Duplex).writableCorked));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    const got: string[] = [];
    await new Promise<void>((resolve) => {
      client.on('message', (d) => {
        got.push(String(d));
        if (got.length === 200) resolve();
      });
    });
    client.close();
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => `frame ${i}`));
    expect(corked).toEqual([1, 0]);
  });
});
