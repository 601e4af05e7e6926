/**
 * A man-in-the-middle relay for adversarial tests (issue 13): a WebSocket proxy on 127.0.0.1
 * that sits between clients and the real relay and lets a test drop, delay, hold and reorder,
 * duplicate, rewrite and inject frames in either direction, as a hostile relay operator could.
 *
 * It is generic over frame JSON: it reads only a frame's `type`, the `envelope`/`envelopes` of
 * `deliver` and `history` frames, the `head` of `ready`/`joined`/`history`, the `seq` of `ack`,
 * the `id` of history requests and the `contactId`/`participantId`/`role` of `ready`. Of an
 * envelope it reads `seq` (and a test's own code may read `msgId`, `senderId`, `epoch`,
 * `sentAt`); every other field passes through untouched, so the envelope may grow fields.
 *
 * Rules: per direction, hooks run in the order they were added. A hook returns an Action:
 * nothing or 'pass' (next hook), a frame object (rewrite, next hook sees the new frame), or a
 * terminal action: 'drop', an array of frames (send these instead), `act.hold()`,
 * `act.delay(ms)` or `act.duplicate()`. Frames sent by a terminal action, released from hold,
 * injected or replayed do not run through the hooks again.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';

/** Which way a frame travels: relay → client, or client → relay. */
export type Direction = 'toClient' | 'toRelay';

/** A parsed JSON frame (an object with a string `type`). */
export interface Frame {
  type: string;
  [field: string]: unknown;
}

/**
 * An envelope as it travels in `deliver` and `history` frames. Only `seq` is interpreted by
 * this tool; the other named fields are typed for the convenience of tests.
 */
export interface Envelope {
  seq?: number;
  msgId?: string;
  senderId?: string;
  epoch?: number;
  sentAt?: number;
  [field: string]: unknown;
}

const ACTION = Symbol('mitm-action');

/** A terminal action made by `act`. */
export type TerminalAction =
  | { readonly [ACTION]: 'hold'; frame?: Frame; label?: string }
  | { readonly [ACTION]: 'delay'; ms: number; frame?: Frame }
  | { readonly [ACTION]: 'duplicate'; times: number; afterMs?: number; frame?: Frame };

/**
 * What a hook decides for a frame. `undefined`/'pass': unchanged, on to the next hook. A frame
 * object: the rewritten frame, on to the next hook. Terminal (later hooks do not run):
 * 'drop'; an array of frames, sent in its place (`[]` drops, `[f, f]` duplicates);
 * 'hold' or `act.hold()`; `act.delay(ms)`; `act.duplicate()`.
 */
export type Action = void | undefined | 'pass' | 'drop' | 'hold' | Frame | Frame[] | TerminalAction;

/** A hook: sees each frame (a fresh parse it may mutate and return) of its direction. */
export type Hook = (frame: Frame, conn: MitmConnection) => Action;

/** Builders for actions. */
export const act = {
  pass: (): Action => 'pass',
  drop: (): Action => 'drop',
  /** Replaces the frame (later hooks see the new one). */
  rewrite: (frame: Frame): Action => frame,
  /** Sends these frames instead of the one seen (no further hooks). */
  replace: (frames: Frame[]): Action => frames,
  /** Parks the frame (or `frame` instead) until `release`d; `label` helps to find it again. */
  hold: (opts: { frame?: Frame; label?: string } = {}): TerminalAction => ({
    [ACTION]: 'hold',
    ...opts,
  }),
  /** Sends the frame (or `frame` instead) after `ms`; frames behind it overtake it. */
  delay: (ms: number, frame?: Frame): TerminalAction => ({
    [ACTION]: 'delay',
    ms,
    ...(frame ? { frame } : {}),
  }),
  /**
   * Sends the frame now and `times` more copies (default 1): at once, or after `afterMs`.
   */
  duplicate: (opts: { times?: number; afterMs?: number; frame?: Frame } = {}): TerminalAction => ({
    [ACTION]: 'duplicate',
    times: opts.times ?? 1,
    ...(opts.afterMs !== undefined ? { afterMs: opts.afterMs } : {}),
    ...(opts.frame ? { frame: opts.frame } : {}),
  }),
};

/** One frame in a log: what the proxy received (`seen`) or what it sent on (`sent`). */
export interface LoggedFrame {
  /** Position in its log. */
  index: number;
  dir: Direction;
  conn: MitmConnection;
  /** The parsed frame (a private copy), or null for a binary or non-JSON-object frame. */
  frame: Frame | null;
  /** Sent-log only: true when the frame was injected, replayed or emitted by a helper. */
  injected: boolean;
  at: number;
}

/** A frame parked by `act.hold()` until released or dropped. */
export interface HeldFrame {
  readonly id: number;
  readonly dir: Direction;
  readonly conn: MitmConnection;
  readonly frame: Frame;
  readonly label: string | undefined;
  /** Sends it on now (to its connection's side, if still open). */
  release(): void;
  /** Forgets it. */
  drop(): void;
}

/** A rule added to the proxy. */
export interface Rule {
  /** Frames this rule changed, dropped, held or otherwise acted on (not the ones it passed). */
  readonly hits: number;
  /** Removes the rule (helpers that buffer frames send them on unchanged). */
  remove(): void;
}

/** One proxied client connection and its upstream connection to the real relay. */
export interface MitmConnection {
  readonly id: number;
  /** Request path and query the client connected with (forwarded upstream). */
  readonly path: string;
  /** From the relay's `ready` frame, once seen. */
  readonly contactId: string | undefined;
  readonly participantId: string | undefined;
  readonly role: string | undefined;
  /** False once either side closed. */
  readonly open: boolean;
  readonly client: WebSocket;
  readonly upstream: WebSocket;
  /** Sends a frame (or raw text) to the client, bypassing the hooks. */
  sendToClient(frame: Frame | string): void;
  /** Sends a frame (or raw text) to the relay, bypassing the hooks. */
  sendToRelay(frame: Frame | string): void;
  /** Closes both sides (the client sees `code`, default 1001). */
  close(code?: number, reason?: string): void;
  /** Cuts both sockets without a close handshake (a network failure). */
  kill(): void;
}

/** The man-in-the-middle relay. */
export interface MitmRelay {
  /** ws:// URL to give clients (`stack.client(token, { relayUrl: mitm.url })`). */
  readonly url: string;
  readonly upstreamUrl: string;
  /** Connections currently open. */
  readonly connections: readonly MitmConnection[];
  /** Every connection ever made, open or not. */
  readonly allConnections: readonly MitmConnection[];
  /** Every frame received, from either side, before any hook ran. */
  readonly seen: readonly LoggedFrame[];
  /** Every frame sent on, after the hooks, including injected ones. */
  readonly sent: readonly LoggedFrame[];
  /** Frames currently held. */
  readonly held: readonly HeldFrame[];

  /** Adds a hook for one direction; returns the rule. */
  on(dir: Direction, hook: Hook): Rule;
  toClient(hook: Hook): Rule;
  toRelay(hook: Hook): Rule;
  /** Removes every rule (buffering helpers flush what they hold). Held frames stay held. */
  clearRules(): void;

  /**
   * Releases held frames, in the order given (default: all, in the order they were held). Pass
   * a reordered list (e.g. `[...mitm.held].reverse()`) to deliver them in another order.
   */
  release(frames?: readonly HeldFrame[] | ((h: HeldFrame) => boolean)): number;
  /** Resolves once `n` frames (matching `filter`) are held. */
  waitForHeld(
    n: number,
    filter?: (h: HeldFrame) => boolean,
    timeoutMs?: number,
  ): Promise<HeldFrame[]>;

  /**
   * Sends a frame to clients (default) or to the relay, bypassing hooks. `conn`: one
   * connection, or a predicate; default every open connection. Returns how many got it.
   */
  inject(
    frame: Frame | string,
    opts?: { dir?: Direction; conn?: MitmConnection | ((c: MitmConnection) => boolean) },
  ): number;

  /**
   * Envelopes the relay sent in `deliver` and `history` frames, as it sent them (copies), in
   * seq order, for one contact (optional when only one contact was seen).
   */
  envelopes(contactId?: string): Envelope[];
  /** The remembered envelope at `seq` (a copy). @throws Error when none was seen. */
  envelope(seq: number, contactId?: string): Envelope;
  /**
   * Replays a remembered envelope (or the given one) to clients as a `deliver` frame, with
   * `seq` set to `asSeq` when given. Targets as for `inject`. Returns how many got it.
   */
  replay(
    envelope: number | Envelope,
    opts?: {
      asSeq?: number;
      contactId?: string;
      conn?: MitmConnection | ((c: MitmConnection) => boolean);
    },
  ): number;

  /**
   * Resolves with the first logged frame (default log: `seen`, from index `after`, default 0)
   * that satisfies `pred`, waiting for it if need be.
   */
  waitFor(
    pred: (e: LoggedFrame) => boolean,
    opts?: { log?: 'seen' | 'sent'; after?: number; timeoutMs?: number },
  ): Promise<LoggedFrame>;
  /** Resolves with the first open connection that satisfies `pred` (e.g. by participantId after `ready`). */
  waitForConnection(
    pred?: (c: MitmConnection) => boolean,
    timeoutMs?: number,
  ): Promise<MitmConnection>;
  /** While false, new connections are refused at the handshake (HTTP 503), as a relay that is down. */
  acceptConnections(accept: boolean): void;

  // ---- helpers ------------------------------------------------------------------------------

  /** Drops frames of `type` in one direction (default toClient); `count`: only the first N. */
  dropType(
    type: string,
    opts?: { dir?: Direction; count?: number; conn?: (c: MitmConnection) => boolean },
  ): Rule;
  /** Drops every frame of `type`, both directions, every connection, for as long as the rule lives. */
  suppressAll(type: string): Rule;
  /**
   * Applies `fn` to every envelope of `deliver` frames and of `history` replies to clients.
   * `fn` returns the envelope unchanged (`undefined`), a replacement, `null` (hide it) or an
   * array (several envelopes: one `deliver` frame each, or spliced into the history page).
   * `heads` rewrites the `head` of `ready`, `joined` and `history`; `acks` the `seq` of `ack`
   * (null leaves the ack as it was); `since` the cursor of the clients' `join` and `history`
   * requests (map the client's view back to the relay's seqs).
   */
  rewriteEnvelopes(
    fn: (env: Envelope, ctx: EnvelopeContext) => Envelope | Envelope[] | null | undefined,
    opts?: {
      heads?: (head: number, conn: MitmConnection) => number;
      acks?: (seq: number, conn: MitmConnection) => number | null;
      since?: (since: number, conn: MitmConnection) => number;
    },
  ): Rule;
  /**
   * Swaps the envelopes at seqs `a` and `b` (a < b): the client gets b's envelope labelled `a`
   * in a's place and a's labelled `b` in b's place. Live, the deliveries from `a` up to `b` are
   * held until `b` arrives. In a history page, a missing partner comes from the remembered
   * envelopes (the page is left as it is when the partner was never seen). Acks are unchanged.
   */
  swapSeqs(a: number, b: number): Rule;
  /**
   * Hides the envelope at `seq` and renumbers every later one down by one, so that no gap
   * shows; heads and acks after it follow (the dropped message's own ack is left as it was).
   */
  renumberAfterDrop(seq: number): Rule;
  /** Hides every envelope after `seq`; heads are capped at `seq` and `more` turns false. */
  truncateAfter(seq: number): Rule;
  /**
   * Answers clients' `history` requests itself instead of the relay: `fn` returns the page
   * (`head` defaults to the last seq given or the request's `since`, `more` to false), or
   * `undefined` to let the request through to the relay.
   */
  serveHistory(
    fn: (
      req: { since: number; limit: number | undefined; id: unknown; frame: Frame },
      conn: MitmConnection,
    ) => { envelopes: Envelope[]; head?: number; more?: boolean } | undefined,
  ): Rule;

  /** Stops listening and cuts every connection. */
  close(): Promise<void>;
}

/** Where an envelope was met by `rewriteEnvelopes`. */
export interface EnvelopeContext {
  conn: MitmConnection;
  /** `deliver` or `history`. */
  source: string;
  /** The frame it travels in. */
  frame: Frame;
}

/** One rule handle over several rules. */
function combine(...rules: Rule[]): Rule {
  return {
    get hits() {
      return rules.reduce((n, r) => n + r.hits, 0);
    },
    remove() {
      for (const r of rules) r.remove();
    },
  };
}

const clone = <T>(v: T): T => structuredClone(v);

function isFrame(v: unknown): v is Frame {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    typeof (v as { type?: unknown }).type === 'string'
  );
}

function isTerminal(v: unknown): v is TerminalAction {
  return typeof v === 'object' && v !== null && ACTION in v;
}

function isEnvelope(v: unknown): v is Envelope {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Close codes a peer may send (RFC 6455 §7.4): others are mapped or replaced by a cut. */
function sendableCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

function parse(data: RawData, isBinary: boolean): Frame | null {
  if (isBinary) return null;
  try {
    const v: unknown = JSON.parse(
      Buffer.isBuffer(data)
        ? data.toString('utf8')
        : Buffer.concat(data as Buffer[]).toString('utf8'),
    );
    return isFrame(v) ? v : null;
  } catch {
    return null;
  }
}

interface RuleEntry {
  hook: Hook;
  hits: number;
  onRemove?: () => void;
}

class Connection implements MitmConnection {
  readonly id: number;
  readonly path: string;
  contactId: string | undefined;
  participantId: string | undefined;
  role: string | undefined;
  open = true;
  readonly client: WebSocket;
  readonly upstream: WebSocket;
  /** `v` of the last frame from the relay, for frames the proxy makes up. */
  v: unknown = 1;
  readonly #proxy: Proxy;

  constructor(proxy: Proxy, id: number, path: string, client: WebSocket, upstream: WebSocket) {
    this.#proxy = proxy;
    this.id = id;
    this.path = path;
    this.client = client;
    this.upstream = upstream;
  }

  sendToClient(frame: Frame | string): void {
    this.#proxy.emitFrame(this, 'toClient', frame, true);
  }

  sendToRelay(frame: Frame | string): void {
    this.#proxy.emitFrame(this, 'toRelay', frame, true);
  }

  close(code = 1001, reason = ''): void {
    for (const ws of [this.client, this.upstream]) {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)
        ws.close(code, reason);
    }
  }

  kill(): void {
    this.client.terminate();
    this.upstream.terminate();
  }
}

class Proxy implements MitmRelay {
  url = '';
  readonly upstreamUrl: string;
  readonly allConnections: Connection[] = [];
  readonly seen: LoggedFrame[] = [];
  readonly sent: LoggedFrame[] = [];
  readonly held: HeldFrame[] = [];
  readonly #rules: Record<Direction, RuleEntry[]> = { toClient: [], toRelay: [] };
  /** contact → seq → envelope as the relay sent it. */
  readonly #remembered = new Map<string, Map<number, Envelope>>();
  readonly #events = new EventEmitter();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #upstreams = new WeakMap<
    IncomingMessage,
    { ws: WebSocket; early: [RawData, boolean][] }
  >();
  /** Upstream sockets opened for handshakes (terminated on close if never adopted). */
  readonly #pending = new Set<WebSocket>();
  #wss: WebSocketServer | undefined;
  #accepting = true;
  #nextConn = 1;
  #nextHeld = 1;

  constructor(upstreamUrl: string) {
    this.upstreamUrl = upstreamUrl;
    this.#events.setMaxListeners(0);
  }

  get connections(): readonly MitmConnection[] {
    return this.allConnections.filter((c) => c.open);
  }

  async listen(): Promise<void> {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      perMessageDeflate: false,
      maxPayload: 16 * 1024 * 1024,
      verifyClient: (info, cb) => {
        if (!this.#accepting) return cb(false, 503, 'mitm: not accepting connections');
        // Open the upstream first, so that a client sees the handshake fail when the relay does.
        const headers: Record<string, string> = {};
        if (info.origin) headers.origin = info.origin;
        const ws = new WebSocket(new URL(info.req.url ?? '/', this.upstreamUrl), {
          headers,
          perMessageDeflate: false,
          maxPayload: 16 * 1024 * 1024,
        });
        const early: [RawData, boolean][] = [];
        ws.on('message', (data, isBinary) => early.push([data, isBinary]));
        const fail = (): void => {
          ws.removeAllListeners();
          ws.on('error', () => undefined);
          ws.terminate();
          cb(false, 502, 'mitm: upstream relay refused');
        };
        this.#pending.add(ws);
        ws.once('close', () => this.#pending.delete(ws));
        ws.once('open', () => {
          ws.off('error', fail);
          ws.off('unexpected-response', fail);
          ws.on('error', () => undefined);
          this.#upstreams.set(info.req, { ws, early });
          cb(true);
        });
        ws.once('error', fail);
        ws.once('unexpected-response', fail);
      },
    });
    this.#wss = wss;
    wss.on('connection', (client, req) => this.#onConnection(client, req));
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    this.url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  }

  #onConnection(client: WebSocket, req: IncomingMessage): void {
    const up = this.#upstreams.get(req);
    if (!up) {
      client.close(1011, 'mitm: no upstream');
      return;
    }
    const upstream = up.ws;
    this.#pending.delete(upstream);
    upstream.removeAllListeners('message');
    const conn = new Connection(this, this.#nextConn++, req.url ?? '/', client, upstream);
    this.allConnections.push(conn);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('message', (data, isBinary) => this.#receive(conn, 'toRelay', data, isBinary));
    upstream.on('message', (data, isBinary) => this.#receive(conn, 'toClient', data, isBinary));
    const mirror = (to: WebSocket) => (code: number, reason: Buffer) => {
      conn.open = false;
      this.#changed();
      if (to.readyState !== WebSocket.OPEN && to.readyState !== WebSocket.CONNECTING) return;
      if (code === 1006) to.terminate();
      else if (sendableCode(code)) to.close(code, reason.toString('utf8'));
      else to.close();
    };
    client.on('close', mirror(upstream));
    upstream.on('close', mirror(client));
    for (const [data, isBinary] of up.early) this.#receive(conn, 'toClient', data, isBinary);
    this.#changed();
  }

  #changed(): void {
    this.#events.emit('change');
  }

  #receive(conn: Connection, dir: Direction, data: RawData, isBinary: boolean): void {
    const frame = parse(data, isBinary);
    this.seen.push({
      index: this.seen.length,
      dir,
      conn,
      frame: frame ? clone(frame) : null,
      injected: false,
      at: Date.now(),
    });
    if (frame && dir === 'toClient') this.#learn(conn, frame);
    if (!frame) {
      this.#rawSend(conn, dir, data, isBinary, null, false);
      this.#changed();
      return;
    }
    this.#run(conn, dir, frame, data);
    this.#changed();
  }

  /** Notes who the connection is and remembers every envelope the relay sent. */
  #learn(conn: Connection, frame: Frame): void {
    if ('v' in frame) conn.v = frame.v;
    if (frame.type === 'ready') {
      if (typeof frame.contactId === 'string') conn.contactId = frame.contactId;
      if (typeof frame.participantId === 'string') conn.participantId = frame.participantId;
      if (typeof frame.role === 'string') conn.role = frame.role;
    }
    const list =
      frame.type === 'deliver' ? [frame.envelope] : frame.type === 'history' ? frame.envelopes : [];
    if (!Array.isArray(list)) return;
    for (const env of list) {
      if (!isEnvelope(env) || typeof env.seq !== 'number') continue;
      const contact = conn.contactId ?? (typeof env.contactId === 'string' ? env.contactId : '?');
      let m = this.#remembered.get(contact);
      if (!m) this.#remembered.set(contact, (m = new Map()));
      m.set(env.seq, clone(env));
    }
  }

  #run(conn: Connection, dir: Direction, original: Frame, raw: RawData): void {
    let frame = original;
    let changed = false;
    for (const rule of [...this.#rules[dir]]) {
      const a = rule.hook(frame, conn);
      if (a === undefined || a === 'pass') continue;
      rule.hits++;
      if (a === 'drop') return;
      if (a === 'hold') return this.#hold(conn, dir, frame, undefined);
      if (Array.isArray(a)) {
        for (const f of a) this.emitFrame(conn, dir, f, false);
        return;
      }
      if (isTerminal(a)) {
        const f = a.frame ?? frame;
        switch (a[ACTION]) {
          case 'hold':
            return this.#hold(conn, dir, f, a.label);
          case 'delay':
            this.#later(a.ms, () => this.emitFrame(conn, dir, f, false));
            return;
          case 'duplicate': {
            const d = a as Extract<TerminalAction, { times: number }>;
            this.emitFrame(conn, dir, f, false);
            for (let i = 0; i < d.times; i++) {
              if (d.afterMs === undefined) this.emitFrame(conn, dir, f, false);
              else this.#later(d.afterMs, () => this.emitFrame(conn, dir, f, false));
            }
            return;
          }
        }
      }
      frame = a;
      changed = true;
    }
    // A frame no hook touched goes on byte for byte; a hook that mutated it in place and
    // returned it counts as a rewrite.
    if (changed) this.emitFrame(conn, dir, frame, false);
    else this.#rawSend(conn, dir, raw, false, frame, false);
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  #hold(conn: Connection, dir: Direction, frame: Frame, label: string | undefined): void {
    const h: HeldFrame = {
      id: this.#nextHeld++,
      dir,
      conn,
      frame,
      label,
      release: () => {
        if (this.#unhold(h)) this.emitFrame(conn, dir, frame, false);
      },
      drop: () => {
        this.#unhold(h);
      },
    };
    this.held.push(h);
    this.#changed();
  }

  #unhold(h: HeldFrame): boolean {
    const i = this.held.indexOf(h);
    if (i < 0) return false;
    this.held.splice(i, 1);
    return true;
  }

  /** Sends a frame to one side without running hooks. */
  emitFrame(conn: MitmConnection, dir: Direction, frame: Frame | string, injected: boolean): void {
    const text = typeof frame === 'string' ? frame : JSON.stringify(frame);
    const parsed = typeof frame === 'string' ? parse(Buffer.from(frame), false) : frame;
    this.#rawSend(conn as Connection, dir, text, false, parsed, injected);
  }

  #rawSend(
    conn: Connection,
    dir: Direction,
    data: RawData | string,
    isBinary: boolean,
    frame: Frame | null,
    injected: boolean,
  ): void {
    const ws = dir === 'toClient' ? conn.client : conn.upstream;
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(data, { binary: isBinary });
    this.sent.push({
      index: this.sent.length,
      dir,
      conn,
      frame: frame ? clone(frame) : null,
      injected,
      at: Date.now(),
    });
    this.#changed();
  }

  // ---- rules ------------------------------------------------------------------------------

  #add(dir: Direction, hook: Hook, onRemove?: () => void): Rule {
    const entry: RuleEntry = { hook, hits: 0, ...(onRemove ? { onRemove } : {}) };
    this.#rules[dir].push(entry);
    return this.#handle([[dir, entry]]);
  }

  #handle(entries: [Direction, RuleEntry][]): Rule {
    const rules = this.#rules;
    return {
      get hits() {
        return entries.reduce((n, [, e]) => n + e.hits, 0);
      },
      remove() {
        for (const [dir, e] of entries) {
          const i = rules[dir].indexOf(e);
          if (i >= 0) {
            rules[dir].splice(i, 1);
            e.onRemove?.();
          }
        }
      },
    };
  }

  on(dir: Direction, hook: Hook): Rule {
    return this.#add(dir, hook);
  }

  toClient(hook: Hook): Rule {
    return this.#add('toClient', hook);
  }

  toRelay(hook: Hook): Rule {
    return this.#add('toRelay', hook);
  }

  clearRules(): void {
    for (const dir of ['toClient', 'toRelay'] as const) {
      for (const e of this.#rules[dir].splice(0)) e.onRemove?.();
    }
  }

  release(frames?: readonly HeldFrame[] | ((h: HeldFrame) => boolean)): number {
    const list =
      frames === undefined
        ? [...this.held]
        : typeof frames === 'function'
          ? this.held.filter(frames)
          : [...frames];
    let n = 0;
    for (const h of list) {
      if (this.held.includes(h)) n++;
      h.release();
    }
    return n;
  }

  waitForHeld(
    n: number,
    filter: (h: HeldFrame) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<HeldFrame[]> {
    return this.#until(
      () => {
        const l = this.held.filter(filter);
        return l.length >= n ? l : undefined;
      },
      timeoutMs,
      `${n} held frames`,
    );
  }

  #targets(conn: MitmConnection | ((c: MitmConnection) => boolean) | undefined): MitmConnection[] {
    if (conn === undefined) return [...this.connections];
    if (typeof conn === 'function') return this.connections.filter(conn);
    return [conn];
  }

  inject(
    frame: Frame | string,
    opts: { dir?: Direction; conn?: MitmConnection | ((c: MitmConnection) => boolean) } = {},
  ): number {
    const targets = this.#targets(opts.conn).filter((c) => c.open);
    for (const c of targets) this.emitFrame(c, opts.dir ?? 'toClient', frame, true);
    return targets.length;
  }

  #contact(contactId: string | undefined): Map<number, Envelope> {
    if (contactId !== undefined) return this.#remembered.get(contactId) ?? new Map();
    if (this.#remembered.size > 1)
      throw new Error(
        `mitm: envelopes of several contacts seen; name one of ${[...this.#remembered.keys()].join(', ')}`,
      );
    return [...this.#remembered.values()][0] ?? new Map();
  }

  envelopes(contactId?: string): Envelope[] {
    return [...this.#contact(contactId).entries()]
      .sort(([a], [b]) => a - b)
      .map(([, e]) => clone(e));
  }

  envelope(seq: number, contactId?: string): Envelope {
    const e = this.#contact(contactId).get(seq);
    if (!e)
      throw new Error(
        `mitm: no envelope with seq ${seq} seen${contactId ? ` for ${contactId}` : ''}`,
      );
    return clone(e);
  }

  replay(
    envelope: number | Envelope,
    opts: {
      asSeq?: number;
      contactId?: string;
      conn?: MitmConnection | ((c: MitmConnection) => boolean);
    } = {},
  ): number {
    const env =
      typeof envelope === 'number' ? this.envelope(envelope, opts.contactId) : clone(envelope);
    if (opts.asSeq !== undefined) env.seq = opts.asSeq;
    let targets = this.#targets(opts.conn);
    if (opts.conn === undefined && opts.contactId !== undefined)
      targets = targets.filter((c) => c.contactId === opts.contactId);
    for (const c of targets)
      this.emitFrame(
        c,
        'toClient',
        { v: (c as Connection).v, type: 'deliver', envelope: clone(env) },
        true,
      );
    return targets.length;
  }

  waitFor(
    pred: (e: LoggedFrame) => boolean,
    opts: { log?: 'seen' | 'sent'; after?: number; timeoutMs?: number } = {},
  ): Promise<LoggedFrame> {
    const log = opts.log === 'sent' ? this.sent : this.seen;
    let from = opts.after ?? 0;
    return this.#until(
      () => {
        for (; from < log.length; from++) {
          const e = log[from];
          if (e && pred(e)) return e;
        }
        return undefined;
      },
      opts.timeoutMs ?? 5000,
      `a ${opts.log ?? 'seen'} frame`,
    );
  }

  waitForConnection(
    pred: (c: MitmConnection) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<MitmConnection> {
    return this.#until(() => this.connections.find(pred), timeoutMs, 'a connection');
  }

  acceptConnections(accept: boolean): void {
    this.#accepting = accept;
  }

  /** Resolves with `check()`'s first defined value, re-checked on every proxy event. */
  #until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    const first = check();
    if (first !== undefined) return Promise.resolve(first);
    return new Promise<T>((resolve, reject) => {
      const onChange = (): void => {
        const v = check();
        if (v === undefined) return;
        clearTimeout(timer);
        this.#events.off('change', onChange);
        resolve(v);
      };
      const timer = setTimeout(() => {
        this.#events.off('change', onChange);
        reject(new Error(`mitm: timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      this.#events.on('change', onChange);
    });
  }

  // ---- helpers ----------------------------------------------------------------------------

  dropType(
    type: string,
    opts: { dir?: Direction; count?: number; conn?: (c: MitmConnection) => boolean } = {},
  ): Rule {
    let left = opts.count ?? Infinity;
    return this.#add(opts.dir ?? 'toClient', (f, c) => {
      if (f.type !== type || left <= 0 || (opts.conn && !opts.conn(c))) return undefined;
      left--;
      return 'drop';
    });
  }

  suppressAll(type: string): Rule {
    const hook: Hook = (f) => (f.type === type ? 'drop' : undefined);
    const a: RuleEntry = { hook, hits: 0 };
    const b: RuleEntry = { hook, hits: 0 };
    this.#rules.toClient.push(a);
    this.#rules.toRelay.push(b);
    return this.#handle([
      ['toClient', a],
      ['toRelay', b],
    ]);
  }

  rewriteEnvelopes(
    fn: (env: Envelope, ctx: EnvelopeContext) => Envelope | Envelope[] | null | undefined,
    opts: {
      heads?: (head: number, conn: MitmConnection) => number;
      acks?: (seq: number, conn: MitmConnection) => number | null;
      since?: (since: number, conn: MitmConnection) => number;
    } = {},
  ): Rule {
    const sinceRule = opts.since
      ? this.#add('toRelay', (frame, conn) => {
          if (
            (frame.type !== 'join' && frame.type !== 'history') ||
            typeof frame.since !== 'number'
          )
            return undefined;
          const since = opts.since?.(frame.since, conn) ?? frame.since;
          return since === frame.since ? undefined : { ...frame, since };
        })
      : undefined;
    const apply = (env: unknown, ctx: EnvelopeContext): { list: unknown[]; touched: boolean } => {
      if (!isEnvelope(env)) return { list: [env], touched: false };
      const r = fn(env, ctx);
      if (r === undefined) return { list: [env], touched: false };
      return { list: r === null ? [] : Array.isArray(r) ? r : [r], touched: true };
    };
    const main = this.#add('toClient', (frame, conn) => {
      let touched = false;
      if (frame.type === 'deliver') {
        const { list, touched: t } = apply(frame.envelope, { conn, source: 'deliver', frame });
        if (!t) return undefined;
        if (list.length === 0) return 'drop';
        // One envelope stays a rewrite, so that later hooks still see it.
        if (list.length === 1) return { ...frame, envelope: list[0] };
        return list.map((envelope) => ({ ...frame, envelope }));
      }
      if (frame.type === 'history' && Array.isArray(frame.envelopes)) {
        const out: unknown[] = [];
        for (const env of frame.envelopes) {
          const { list, touched: t } = apply(env, { conn, source: 'history', frame });
          touched ||= t;
          out.push(...list);
        }
        if (touched) frame = { ...frame, envelopes: out };
      }
      if (
        opts.heads &&
        typeof frame.head === 'number' &&
        ['ready', 'joined', 'history'].includes(frame.type)
      ) {
        const head = opts.heads(frame.head, conn);
        if (head !== frame.head) {
          frame = { ...frame, head };
          touched = true;
        }
      }
      if (opts.acks && frame.type === 'ack' && typeof frame.seq === 'number') {
        const seq = opts.acks(frame.seq, conn);
        if (seq !== null && seq !== frame.seq) {
          frame = { ...frame, seq };
          touched = true;
        }
      }
      return touched ? frame : undefined;
    });
    return sinceRule ? combine(main, sinceRule) : main;
  }

  swapSeqs(a: number, b: number): Rule {
    if (!(a < b)) throw new RangeError('swapSeqs: a must be below b');
    /** Per connection: the deliveries held from `a` on, until `b` arrives. */
    const pending = new Map<MitmConnection, Frame[]>();
    const relabel = (frame: Frame, env: Envelope, seq: number): Frame => ({
      ...frame,
      envelope: { ...clone(env), seq },
    });
    const entry: RuleEntry = {
      hits: 0,
      hook: (frame, conn) => {
        if (frame.type === 'deliver' && isEnvelope(frame.envelope)) {
          const seq = frame.envelope.seq;
          const buf = pending.get(conn);
          if (!buf) {
            if (seq !== a) return undefined;
            pending.set(conn, [frame]);
            return 'drop';
          }
          if (seq !== b) {
            buf.push(frame);
            return 'drop';
          }
          pending.delete(conn);
          const [first, ...between] = buf;
          if (!first || !isEnvelope(first.envelope)) return undefined;
          return [relabel(frame, frame.envelope, a), ...between, relabel(first, first.envelope, b)];
        }
        if (frame.type === 'history' && Array.isArray(frame.envelopes)) {
          const envs = frame.envelopes as unknown[];
          const ia = envs.findIndex((e) => isEnvelope(e) && e.seq === a);
          const ib = envs.findIndex((e) => isEnvelope(e) && e.seq === b);
          if (ia < 0 && ib < 0) return undefined;
          const known = this.#remembered.get(conn.contactId ?? '?');
          const envA = ia >= 0 ? (envs[ia] as Envelope) : known?.get(a);
          const envB = ib >= 0 ? (envs[ib] as Envelope) : known?.get(b);
          if (!envA || !envB) return undefined;
          const out = [...envs];
          if (ia >= 0) out[ia] = { ...clone(envB), seq: a };
          if (ib >= 0) out[ib] = { ...clone(envA), seq: b };
          return { ...frame, envelopes: out };
        }
        return undefined;
      },
      onRemove: () => {
        for (const [conn, buf] of pending)
          for (const f of buf) this.emitFrame(conn, 'toClient', f, false);
        pending.clear();
      },
    };
    this.#rules.toClient.push(entry);
    return this.#handle([['toClient', entry]]);
  }

  renumberAfterDrop(seq: number): Rule {
    const down = (s: number): number => (s > seq ? s - 1 : s);
    return this.rewriteEnvelopes(
      (env) => {
        if (typeof env.seq !== 'number' || env.seq < seq) return undefined;
        return env.seq === seq ? null : { ...env, seq: env.seq - 1 };
      },
      {
        heads: (h) => (h >= seq ? h - 1 : h),
        acks: (s) => (s > seq ? down(s) : null),
        // The client's cursors are in the renumbered view: back to the relay's seqs.
        since: (s) => (s >= seq ? s + 1 : s),
      },
    );
  }

  truncateAfter(seq: number): Rule {
    const cut = this.rewriteEnvelopes(
      (env) => (typeof env.seq === 'number' && env.seq > seq ? null : undefined),
      {
        heads: (h) => Math.min(h, seq),
      },
    );
    // A page that was cut has nothing more to offer.
    const more = this.#add('toClient', (frame) => {
      if (
        frame.type !== 'history' ||
        frame.more !== true ||
        typeof frame.head !== 'number' ||
        frame.head > seq
      )
        return undefined;
      const envs = Array.isArray(frame.envelopes) ? (frame.envelopes as unknown[]) : [];
      const last = envs.at(-1);
      if (envs.length > 0 && isEnvelope(last) && typeof last.seq === 'number' && last.seq < seq)
        return undefined;
      return { ...frame, more: false };
    });
    return combine(cut, more);
  }

  serveHistory(
    fn: (
      req: { since: number; limit: number | undefined; id: unknown; frame: Frame },
      conn: MitmConnection,
    ) => { envelopes: Envelope[]; head?: number; more?: boolean } | undefined,
  ): Rule {
    return this.#add('toRelay', (frame, conn) => {
      if (frame.type !== 'history') return undefined;
      const since = typeof frame.since === 'number' ? frame.since : 0;
      const limit = typeof frame.limit === 'number' ? frame.limit : undefined;
      const page = fn({ since, limit, id: frame.id, frame }, conn);
      if (!page) return undefined;
      const lastSeq = page.envelopes.at(-1)?.seq;
      conn.sendToClient({
        v: frame.v,
        type: 'history',
        id: frame.id,
        envelopes: page.envelopes.map(clone),
        head: page.head ?? (typeof lastSeq === 'number' ? lastSeq : since),
        more: page.more ?? false,
      });
      return 'drop';
    });
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.held.length = 0;
    for (const c of this.allConnections) c.kill();
    for (const ws of this.#pending) ws.terminate();
    const wss = this.#wss;
    if (wss) await new Promise<void>((resolve) => wss.close(() => resolve()));
  }
}

/**
 * Starts a man-in-the-middle relay on 127.0.0.1 (a free port) in front of `upstreamUrl`.
 * @throws Error when it cannot listen.
 */
export async function startMitmRelay(upstreamUrl: string): Promise<MitmRelay> {
  const proxy = new Proxy(upstreamUrl);
  await proxy.listen();
  return proxy;
}
