/**
 * The connection (connection.ts) over a fake WebSocket: auth and join, the identity check of
 * `ready`, which closes end it and which are retried, and history requests that the close fails.
 */
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, LatchkeyError, PROTOCOL_VERSION } from '@latchkey/protocol';
import {
  Connection,
  type ConnectionHandlers,
  type ConnectionState,
  type WebSocketLike,
} from '../src/connection.ts';

const ID = { contactId: 'c-1', participantId: 'v-1', role: 'visitor' as const };

class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  /** Each new socket is accepted as soon as the connection has attached its handlers. */
  static autoAccept = false;
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
    if (FakeSocket.autoAccept) queueMicrotask(() => accept(this));
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code = 1000): void {
    this.serverClose(code);
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(f: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify({ v: PROTOCOL_VERSION, ...f }) });
  }
  serverClose(code: number): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
}

function setup(over: Partial<ConnectionHandlers> = {}, opts: { live?: boolean } = {}) {
  FakeSocket.all = [];
  FakeSocket.autoAccept = false;
  const states: ConnectionState[] = [];
  const errors: LatchkeyError[] = [];
  const failed: LatchkeyError[] = [];
  const conn = new Connection(
    {
      relayUrl: 'ws://relay.test',
      token: 'tok',
      WebSocket: FakeSocket,
      identity: ID,
      live: opts.live ?? true,
      reconnect: true,
      backoff: { minMs: 1, maxMs: 2 },
    },
    {
      since: () => 7,
      deliver: () => undefined,
      ack: () => undefined,
      sendError: () => undefined,
      rateLimited: () => undefined,
      rekey: () => undefined,
      state: (s) => states.push(s),
      error: (e) => errors.push(e),
      ready: () => undefined,
      reconnecting: () => undefined,
      failed: (e) => failed.push(e),
      ...over,
    },
  );
  return { conn, states, errors, failed };
}

/** Opens a fake socket (the newest), answers auth with `ready` and the join with `joined`. */
function accept(ws = FakeSocket.all.at(-1)!, ready: Record<string, unknown> = {}): FakeSocket {
  ws.open();
  ws.frame({ type: 'ready', ...ID, head: 0, maxFrameBytes: 65536, ...ready });
  ws.frame({ type: 'joined', head: 0 });
  return ws;
}

describe('Connection', () => {
  it('authenticates with the token, joins from the last seq, and is connected', async () => {
    const { conn, states } = setup();
    conn.setState('connecting');
    const opened = conn.open();
    const ws = accept();
    await opened;
    expect(ws.sent).toEqual([
      { v: PROTOCOL_VERSION, type: 'auth', token: 'tok' },
      { v: PROTOCOL_VERSION, type: 'join', since: 7 },
    ]);
    expect(conn.state).toBe('connected');
    expect(states).toEqual(['connecting', 'connected']);
  });

  it('without live delivery it is ready at `ready` and never joins', async () => {
    const { conn } = setup({}, { live: false });
    const opened = conn.open();
    const ws = FakeSocket.all[0]!;
    ws.open();
    ws.frame({ type: 'ready', ...ID, head: 0, maxFrameBytes: 65536 });
    await opened;
    expect(ws.sent.map((f) => f.type)).toEqual(['auth']);
  });

  it('drops a relay that names another identity than the token: INTEGRITY', async () => {
    const { conn } = setup();
    const opened = conn.open();
    accept(undefined, { participantId: 'someone-else' });
    await expect(opened).rejects.toSatisfy((e) => LatchkeyError.is(e, 'INTEGRITY'));
  });

  it('a lost connection reconnects and joins again', async () => {
    const back = new Promise<void>((resolve) => {
      let n = 0;
      const { conn } = setup({
        ready: () => {
          if (++n === 2) resolve();
        },
      });
      void conn.open();
      accept();
      FakeSocket.autoAccept = true;
      FakeSocket.all[0]!.serverClose(1006);
    });
    await back;
    expect(FakeSocket.all).toHaveLength(2);
    expect(FakeSocket.all[1]!.sent.map((f) => f.type)).toEqual(['auth', 'join']);
  });

  it('a fatal close (removed from the contact) ends it: error, closed, waiting sends failed', async () => {
    const { conn, states, errors, failed } = setup();
    const opened = conn.open();
    const ws = accept();
    await opened;
    ws.serverClose(ERROR_CODES.FORBIDDEN.ws);
    expect(conn.state).toBe('closed');
    expect(states.at(-1)).toBe('closed');
    expect(errors).toHaveLength(1);
    expect(failed).toEqual(errors);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('a history request is answered by id, and rejected when the connection drops', async () => {
    const { conn } = setup();
    await expect(conn.request({ since: 0, limit: 10 })).rejects.toSatisfy((e) =>
      LatchkeyError.is(e, 'UNAVAILABLE'),
    );
    const opened = conn.open();
    const ws = accept();
    await opened;
    const answered = conn.request({ since: 0, limit: 10 });
    const id = ws.sent.at(-1)!.id as string;
    ws.frame({ type: 'history', id, envelopes: [], head: 0, more: false });
    await expect(answered).resolves.toMatchObject({ id, more: false });
    const dropped = conn.request({ since: 0, limit: 10 });
    ws.serverClose(1006);
    await expect(dropped).rejects.toSatisfy((e) => LatchkeyError.is(e, 'UNAVAILABLE'));
    conn.close();
  });
});
