/**
 * A fake of ws's WebSocket as far as a relay Connection sees it (connection.ts PeerSocket):
 * records what the relay writes, closes, pings and terminates; the test plays the peer.
 */
import { EventEmitter } from 'node:events';
import type { ErrorFrame, ServerFrame } from '@latchkey/protocol';

/** ws's WebSocket as far as a Connection sees it, recording what the relay does to it. */
export class FakeSocket extends EventEmitter {
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  readonly closes: { code: number; reason: string }[] = [];
  pings = 0;
  terminated = false;

  send(data: string): void {
    this.sent.push(data);
  }
  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
    this.readyState = 2;
  }
  ping(): void {
    this.pings++;
  }
  terminate(): void {
    this.terminated = true;
    this.finish(1006);
  }
  /** The socket closed (the peer answered the close, or it went away). */
  finish(code: number): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit('close', code);
  }
  /** A frame from the peer. */
  peer(text: string, isBinary = false): void {
    this.emit('message', Buffer.from(text), isBinary);
  }
  frames(): ServerFrame[] {
    return this.sent.map((t) => JSON.parse(t) as ServerFrame);
  }
  errors(): string[] {
    return this.frames()
      .filter((f): f is ErrorFrame => f.type === 'error')
      .map((f) => f.code);
  }
}
