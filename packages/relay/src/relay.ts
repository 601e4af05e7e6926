/**
 * The relay: a WebSocket server that authenticates participants, orders and stores their sealed
 * envelopes and fans them out (protocol frames in @latchkey/protocol `frames.ts`).
 *
 * Per connection: the first frame must be `auth` within the auth timeout (else AUTH_TIMEOUT,
 * close 4408); a valid token gets `ready`. `join` replays every envelope after `since` as
 * `deliver` frames, then `joined`, then live envelopes. `send` is acked only once its group
 * commit is durable, then delivered to every other joined connection of the contact. `history`
 * pages the log; `ping` gets `pong`.
 *
 * Hostile input: every text frame is parsed with the protocol's zod schemas; binary frames,
 * malformed or unknown frames get a BAD_FRAME error and the connection stays open until it has
 * made too many protocol errors (close 1008). Frames above maxFrameBytes close with 1009. A
 * token bucket per connection and one per client IP (admission.ts) answer floods with
 * RATE_LIMITED and close sustained abuse; origin/IP allowlists are checked before the handshake.
 * Storage quotas per contact and per participant (quota.ts) are checked by the store in the
 * append's own transaction: a send over them gets QUOTA_EXCEEDED and nothing is stored.
 * Peers only ever see an ErrorFrame with a stable code and a short message. Logs carry codes
 * and opaque ids, never tokens, ciphertext or envelope content.
 *
 * The relay validates schemas and metadata only: it holds no key and opens nothing.
 */
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import {
  AUDIENCE_RELAY,
  ClientFrame,
  ERROR_CODES,
  LIMITS,
  LatchkeyError,
  PROTOCOL_VERSION,
  SENDING_ROLES,
  WS_CLOSE_GOING_AWAY,
  WS_CLOSE_POLICY,
  parseJson,
  toLatchkeyError,
  type ErrorCode,
  type ErrorFrame,
  type HistoryRequestFrame,
  type JoinFrame,
  type Principal,
  type SendFrame,
  type ServerFrame,
  type StoredEnvelope,
} from '@latchkey/protocol';
import { createAdminApi, type AdminApi } from './admin-api.ts';
import {
  CLOCK_TOLERANCE_SECONDS,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  resolveOptions,
  type RelayOptions,
  type TlsOptions,
} from './options.ts';

export {
  DEFAULT_RELAY_MAX_CONNECTIONS,
  type RelayLogEvent,
  type RelayOptions,
  type TlsOptions,
} from './options.ts';
import { type ContactStore } from './contacts.ts';
import { Admission, clientIp, refuseUpgrade } from './admission.ts';
import { GroupCommit } from './group-commit.ts';
import { TokenBucket } from './limiter.ts';
import { type MessageStore } from './store.ts';
import {
  InProcessFanout,
  newRelayId,
  type EnvelopeEvent,
  type FanoutSubscription,
} from './fanout.ts';
import { RelayMetrics, createOpsEndpoints } from './metrics.ts';
import { emitAdmission, emitMessageStored } from './webhook-events.ts';

/** A running relay. */
export interface Relay {
  /** Serves WebSocket upgrades of an existing HTTP(S) server (every path). */
  attach(server: HttpServer | HttpsServer): void;
  /**
   * Starts an HTTP server of its own and serves WebSocket upgrades on it.
   * @throws Error when the address cannot be bound (e.g. EADDRINUSE).
   */
  listen(opts: {
    host: string;
    port: number;
    tls?: TlsOptions;
  }): Promise<{ url: string; port: number }>;
  /**
   * Stops accepting, commits and acks pending sends, closes every client with 1001, closes
   * its own HTTP server and (when it opened it) the store. Idempotent.
   */
  close(): Promise<void>;
  /** The message store in use. */
  readonly store: MessageStore;
  /** The contact lifecycle and membership store in use. */
  readonly contacts: ContactStore;
  /**
   * Serves the admin API (`/admin/v1/...`) on a request of an HTTP server the caller owns
   * (`listen` does this on its own server). Returns false when the path is not the admin API's.
   */
  handleHttp(req: IncomingMessage, res: ServerResponse): boolean;
  /**
   * Ends every connection of a participant (or of the whole contact when `participantId` is
   * null) with an error frame of `code` and its close code. Returns how many were closed.
   */
  disconnect(contactId: string, participantId: string | null, code: ErrorCode): number;
  /** Open WebSocket connections. */
  readonly connections: number;
}

type JoinState = 'no' | 'joining' | 'yes';

interface Conn {
  id: number;
  ws: WebSocket;
  /** Client IP, for the per-IP limits. */
  ip: string;
  phase: 'auth' | 'authenticating' | 'ready' | 'closed';
  principal: Principal | undefined;
  join: JoinState;
  /** Live envelopes that arrive while a join (or a gap repair) replays history. */
  joinBuffer: StoredEnvelope[];
  /** Highest seq this connection has been given (or sent itself); deliveries go in seq order. */
  lastSeq: number;
  /** Seqs of this connection's own acked sends above lastSeq (never delivered back to it). */
  own: Set<number>;
  /** Frames received while the token is being verified. */
  early: string[];
  alive: boolean;
  protocolErrors: number;
  bucket: TokenBucket;
  /** The participant's byte bucket, shared by its connections here (once authenticated). */
  bytes: ParticipantBytes | undefined;
  rateWindowStart: number;
  rateDrops: number;
  timers: NodeJS.Timeout[];
}

interface ParticipantBytes {
  bucket: TokenBucket;
  conns: number;
}

/** Frames a connection may pipeline behind its auth frame before it is cut off. */
const MAX_EARLY_FRAMES = 32;
/** Rate-limited frames within RATE_WINDOW_MS that close a connection. */
const MAX_RATE_DROPS = 100;
const RATE_WINDOW_MS = 10_000;
/** How long a participant closed for rate abuse is refused (on this relay). */
const RATE_ABUSE_COOLDOWN_MS = 10_000;
/** Outgoing bytes a slow reader may leave queued before it is dropped (it can resume). */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
/** Close clients that have not finished the closing handshake by then. */
const CLOSE_GRACE_MS = 2_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Short, fixed messages per code: nothing of the peer's input or of our internals. */
const MESSAGES: Partial<Record<ErrorCode, string>> = {
  AUTH_REQUIRED: 'auth frame required first',
  AUTH_TIMEOUT: 'auth timeout',
  AUTH_EXPIRED: 'token expired',
  AUTH_INVALID: 'invalid token',
  UNAVAILABLE: 'temporarily unavailable',
  INTERNAL: 'internal error',
  RATE_LIMITED: 'rate limit exceeded',
  QUOTA_EXCEEDED: 'storage quota of this contact or participant used up',
  CONFLICT: 'msgId already used for another message',
};

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function rawSize(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data.byteLength;
}

/**
 * Parses one client frame.
 * @throws LatchkeyError BAD_FRAME, or UNSUPPORTED_VERSION for a well-formed frame of another `v`.
 */
function parseClientFrame(text: string): ClientFrame {
  try {
    return parseJson(ClientFrame, text);
  } catch (err) {
    let v: unknown;
    try {
      v = (JSON.parse(text) as { v?: unknown } | null)?.v;
    } catch {
      // not JSON at all: BAD_FRAME stands
    }
    if (typeof v === 'number' && v !== PROTOCOL_VERSION) {
      throw new LatchkeyError(
        'UNSUPPORTED_VERSION',
        `protocol version ${PROTOCOL_VERSION} required`,
      );
    }
    throw err;
  }
}

/**
 * Creates a relay over a message store. Nothing is served until `attach` or `listen`.
 * @throws RangeError on an API secret shorter than 32 bytes or a non-positive limit or quota.
 * @throws LatchkeyError UNAVAILABLE when `store.path` cannot be opened.
 */
export function createRelay(opts: RelayOptions): Relay {
  const {
    verifier,
    policy,
    expirySweepMs,
    shredder,
    retention,
    maxFrameBytes,
    authTimeoutMs,
    heartbeatMs,
    maxProtocolErrors,
    rateLimit,
    quota,
    byteRate,
    store,
    ownsStore,
    contacts,
    adminKeys,
    maxHistoryBytes,
    log,
  } = resolveOptions(opts);
  /** Participants closed for rate abuse, until when their new connections are refused. */
  const coolingDown = new Map<string, number>();
  /** Byte buckets of the participants connected here, by contact and participant id. */
  const participantBytes = new Map<string, ParticipantBytes>();

  const admission = new Admission(opts.admission);
  const fanout = opts.fanout ?? new InProcessFanout();
  const relayId = newRelayId();
  const metrics = new RelayMetrics();
  /** The store as the committer sees it: transaction latency and stored envelopes counted. */
  const timedStore: MessageStore = {
    appendBatch: async (envelopes) => {
      const t0 = performance.now();
      const results = await store.appendBatch(envelopes, quota);
      metrics.commit.observe((performance.now() - t0) / 1000);
      metrics.messages += results.filter((r) => r.ok && !r.duplicate).length;
      return results;
    },
    head: (contactId) => store.head(contactId),
    history: (contactId, since, limit) => store.history(contactId, since, limit),
    get stats() {
      return store.stats;
    },
    close: () => store.close(),
  };
  const committer = new GroupCommit(timedStore, {
    onError: (err, batchSize) =>
      log({ event: 'commit-failed', code: err.code, batch: batchSize, detail: err.detail }),
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
  });
  const conns = new Set<Conn>();
  /** Joined (or joining) connections per contact. */
  const subscribers = new Map<string, Set<Conn>>();
  const attached = new Map<
    HttpServer | HttpsServer,
    (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  >();
  let ownServer: HttpServer | undefined;
  let closing = false;
  let closed: Promise<void> | undefined;
  let nextConnId = 1;

  const heartbeat = setInterval(() => {
    // A participant's bucket outlives its connections until it is full again, so reconnecting
    // does not refill it.
    for (const [key, pb] of participantBytes) {
      if (pb.conns <= 0 && pb.bucket.waitMs(byteRate.burst) === 0) participantBytes.delete(key);
    }
    const now = Date.now();
    for (const [key, until] of coolingDown) if (until <= now) coolingDown.delete(key);
    for (const c of conns) {
      if (!c.alive) {
        log({ event: 'heartbeat-timeout', conn: c.id });
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        c.ws.terminate();
      }
    }
  }, heartbeatMs);
  heartbeat.unref();

  // ---- contact lifecycle -------------------------------------------------------------------

  let sweeping: Promise<void> | undefined;
  /** Marks contacts past their expiry as expired, ends their connections, calls retention. */
  function sweepExpired(): Promise<void> {
    return (sweeping ??= (async () => {
      try {
        const now = Date.now();
        for (const contactId of await contacts.expireDue(now)) {
          const n = disconnect(contactId, null, 'CONTACT_EXPIRED');
          log({ event: 'contact-expired', contactId, closed: n });
          opts.webhooks?.emit('contact.expired', { contactId, time: now });
          await retention.contactExpired(contactId, now).catch((err: unknown) =>
            log({
              event: 'retention-failed',
              contactId,
              detail: err instanceof Error ? err.name : typeof err,
            }),
          );
        }
      } catch (err) {
        log({ event: 'sweep-failed', code: toLatchkeyError(err).code });
      } finally {
        sweeping = undefined;
      }
    })());
  }
  const sweeper = setInterval(() => void sweepExpired(), expirySweepMs);
  sweeper.unref();

  const admin: AdminApi | undefined =
    adminKeys.length === 0
      ? undefined
      : createAdminApi({
          contacts,
          keys: adminKeys,
          ...(opts.adminIpAllowlist === undefined ? {} : { ipAllowlist: opts.adminIpAllowlist }),
          policy,
          log,
          onKick: (contactId, participantId) => {
            const n = disconnect(contactId, participantId, 'FORBIDDEN');
            // The key service rotated before this call: the others fetch the new epoch.
            rekey(contactId);
            return n;
          },
          onExpiryChanged: () => sweepExpired(),
          ...(opts.webhooks ? { webhooks: opts.webhooks } : {}),
          ...(shredder ? { onShred: (contactId: string) => shred(contactId) } : {}),
        });

  /**
   * Tells every remaining connection of a contact to fetch the current content key, here and
   * (unless the request came from the fan-out) on every other relay, like `disconnect`.
   */
  function rekey(contactId: string, fromFanout = false): void {
    if (!fromFanout) {
      fanout.publish({ type: 'rekey', contactId, origin: relayId, at: Date.now() }).catch(() => {
        metrics.fanoutPublishFailures++;
        log({ event: 'fanout-publish-failed', contactId });
      });
    }
    for (const c of conns) {
      if (c.phase === 'ready' && c.principal?.contactId === contactId)
        sendFrame(c, { v: PROTOCOL_VERSION, type: 'rekey' });
    }
  }

  /** Crypto-shredding on the relay: the contact expires at once, its ciphertext is deleted. */
  async function shred(contactId: string): Promise<number> {
    const now = Date.now();
    await contacts.setExpiry(contactId, now, now).catch((err: unknown) => {
      if (!LatchkeyError.is(err, 'CONTACT_EXPIRED') && !LatchkeyError.is(err, 'NOT_FOUND'))
        throw err;
    });
    const closed = disconnect(contactId, null, 'CONTACT_EXPIRED');
    if (!shredder) throw new LatchkeyError('NOT_FOUND', 'no shredder configured');
    const deleted = await shredder.deleteContact(contactId);
    log({ event: 'contact-shredded', contactId, closed, deleted });
    return deleted;
  }

  /**
   * Ends connections of a contact (all, or one participant's) with `code`, here and (unless the
   * request came from the fan-out) on every other relay. Returns how many closed here.
   */
  function disconnect(
    contactId: string,
    participantId: string | null,
    code: ErrorCode,
    fromFanout = false,
  ): number {
    if (!fromFanout) {
      fanout
        .publish({
          type: 'disconnect',
          contactId,
          participantId,
          code,
          origin: relayId,
          at: Date.now(),
        })
        .catch(() => {
          metrics.fanoutPublishFailures++;
          log({ event: 'fanout-publish-failed', contactId });
        });
    }
    let n = 0;
    for (const c of conns) {
      const p = c.principal;
      if (
        !p ||
        p.contactId !== contactId ||
        (participantId !== null && p.participantId !== participantId)
      )
        continue;
      if (c.phase === 'closed') continue;
      n++;
      sendError(c, code, code === 'FORBIDDEN' ? 'removed from this contact' : undefined);
      // FORBIDDEN does not close by itself (a refused frame), but a removal does.
      closeConn(c, ERROR_CODES[code].ws, code);
      c.phase = 'closed';
      if (c.principal) unsubscribe(c, c.principal.contactId);
    }
    return n;
  }

  // ---- sending to a peer -------------------------------------------------------------------

  function sendRaw(c: Conn, text: string): void {
    if (c.ws.readyState !== WebSocket.OPEN) return;
    if (c.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      log({ event: 'slow-consumer', conn: c.id });
      closeConn(c, ERROR_CODES.UNAVAILABLE.ws, 'UNAVAILABLE');
      return;
    }
    c.ws.send(text);
  }

  function sendFrame(c: Conn, frame: ServerFrame): void {
    sendRaw(c, JSON.stringify(frame));
  }

  function closeConn(c: Conn, code: number, reason: string): void {
    if (c.ws.readyState === WebSocket.OPEN || c.ws.readyState === WebSocket.CONNECTING)
      c.ws.close(code, reason);
  }

  /** Sends an ErrorFrame; closes the connection when the code says so. */
  function sendError(c: Conn, code: ErrorCode, message?: string, ref?: ErrorFrame['ref']): void {
    log({ event: 'error', conn: c.id, code });
    const frame: ErrorFrame = {
      v: PROTOCOL_VERSION,
      type: 'error',
      code,
      message: (message ?? MESSAGES[code] ?? code).slice(0, 200),
      ...(ref === undefined ? {} : { ref }),
    };
    sendFrame(c, frame);
    if (ERROR_CODES[code].closes) closeConn(c, ERROR_CODES[code].ws, code);
  }

  /** An error the peer caused: counted, and too many close the connection (1008). */
  function protocolError(
    c: Conn,
    code: ErrorCode,
    message?: string,
    ref?: ErrorFrame['ref'],
  ): void {
    c.protocolErrors++;
    sendError(c, code, message, ref);
    if (c.protocolErrors > maxProtocolErrors) {
      log({ event: 'too-many-errors', conn: c.id });
      closeConn(c, WS_CLOSE_POLICY, 'too many protocol errors');
    }
  }

  /** Reports an unexpected failure: a typed code to the peer, the detail to the log only. */
  function failure(c: Conn, err: unknown, ref?: ErrorFrame['ref']): void {
    const e = toLatchkeyError(err);
    if (e.code === 'INTERNAL' || e.code === 'UNAVAILABLE') {
      // Only our own typed details reach the log: a foreign error's message might quote input.
      const detail = LatchkeyError.is(err)
        ? e.detail
        : err instanceof Error
          ? err.name
          : typeof err;
      log({ event: 'failure', conn: c.id, code: e.code, detail });
      sendError(c, e.code, undefined, ref);
    } else {
      sendError(c, e.code, e.message, ref);
    }
  }

  // ---- connection lifecycle ----------------------------------------------------------------

  function onConnection(ws: WebSocket, ip: string): void {
    const c: Conn = {
      id: nextConnId++,
      ws,
      ip,
      phase: 'auth',
      principal: undefined,
      join: 'no',
      joinBuffer: [],
      lastSeq: 0,
      own: new Set(),
      early: [],
      alive: true,
      protocolErrors: 0,
      bucket: new TokenBucket(rateLimit),
      bytes: undefined,
      rateWindowStart: Date.now(),
      rateDrops: 0,
      timers: [],
    };
    conns.add(c);
    log({ event: 'connect', conn: c.id });
    c.timers.push(
      setTimeout(() => {
        if (c.phase === 'auth' || c.phase === 'authenticating') sendError(c, 'AUTH_TIMEOUT');
      }, authTimeoutMs),
    );
    ws.on('pong', () => {
      c.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      try {
        onMessage(c, data, isBinary);
      } catch (err) {
        failure(c, err);
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      const code: ErrorCode =
        err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'TOO_LARGE' : 'BAD_FRAME';
      log({ event: 'error', conn: c.id, code, wsError: err.code });
    });
    ws.on('close', (code) => {
      c.phase = 'closed';
      for (const t of c.timers) clearTimeout(t);
      c.timers = [];
      c.early = [];
      c.joinBuffer = [];
      if (c.principal) unsubscribe(c, c.principal.contactId);
      conns.delete(c);
      releaseBytes(c);
      log({ event: 'close', conn: c.id, wsCode: code });
    });
    if (closing) closeConn(c, WS_CLOSE_GOING_AWAY, 'going away');
  }

  function onMessage(c: Conn, data: RawData, isBinary: boolean): void {
    if (c.phase === 'closed') return;
    c.alive = true;
    if (!c.bucket.take() || !admission.takeFrame(c.ip)) {
      rateLimited(c, 1);
      return;
    }
    if (c.bytes !== undefined && !c.bytes.bucket.take(rawSize(data))) {
      // Over its byte rate: such frames are large, so the connection is cut off ten times sooner.
      rateLimited(c, 10);
      return;
    }
    if (isBinary) {
      protocolError(c, 'BAD_FRAME', 'binary frames are not accepted');
      return;
    }
    if (rawSize(data) > maxFrameBytes) {
      // ws enforces maxPayload already; this guards a fragmented message's total as well.
      sendError(c, 'TOO_LARGE', 'frame too large');
      return;
    }
    const text = rawText(data);
    if (c.phase === 'authenticating') {
      if (c.early.length >= MAX_EARLY_FRAMES) {
        protocolError(c, 'BAD_REQUEST', 'too many frames before ready');
        closeConn(c, WS_CLOSE_POLICY, 'too many frames before ready');
        return;
      }
      c.early.push(text);
      return;
    }
    onText(c, text);
  }

  function releaseBytes(c: Conn): void {
    if (c.bytes) c.bytes.conns--;
    c.bytes = undefined;
  }

  /** Refuses a frame over a rate; `weight` refusals count towards cutting the connection off. */
  function rateLimited(c: Conn, weight: number): void {
    const now = Date.now();
    if (now - c.rateWindowStart > RATE_WINDOW_MS) {
      c.rateWindowStart = now;
      c.rateDrops = 0;
    }
    c.rateDrops += weight;
    if (c.rateDrops > MAX_RATE_DROPS) {
      log({ event: 'rate-abuse', conn: c.id });
      // The participant cools down: its next connections are refused before any store work.
      if (c.principal)
        coolingDown.set(
          `${c.principal.contactId}\u0000${c.principal.participantId}`,
          now + RATE_ABUSE_COOLDOWN_MS,
        );
      closeConn(c, WS_CLOSE_POLICY, 'rate limit abuse');
      return;
    }
    sendError(c, 'RATE_LIMITED');
  }

  function onText(c: Conn, text: string): void {
    let frame: ClientFrame;
    try {
      frame = parseClientFrame(text);
    } catch (err) {
      const e = toLatchkeyError(err);
      if (e.code === 'UNSUPPORTED_VERSION') sendError(c, e.code, e.message);
      else if (c.phase === 'auth') sendError(c, 'AUTH_REQUIRED');
      else protocolError(c, 'BAD_FRAME', e.code === 'BAD_FRAME' ? e.message : 'invalid frame');
      return;
    }
    if (c.phase === 'auth') {
      if (frame.type === 'auth') startAuth(c, frame.token);
      else sendError(c, 'AUTH_REQUIRED');
      return;
    }
    switch (frame.type) {
      case 'auth':
        protocolError(c, 'BAD_REQUEST', 'already authenticated');
        return;
      case 'join':
        onJoin(c, frame);
        return;
      case 'send':
        onSend(c, frame);
        return;
      case 'history':
        onHistory(c, frame);
        return;
      case 'ping':
        sendFrame(c, {
          v: PROTOCOL_VERSION,
          type: 'pong',
          ...(frame.id === undefined ? {} : { id: frame.id }),
        });
        return;
    }
  }

  function startAuth(c: Conn, token: string): void {
    c.phase = 'authenticating';
    void (async () => {
      const principal = await verifier.verify(token, { audience: AUDIENCE_RELAY });
      const coolKey = `${principal.contactId}\u0000${principal.participantId}`;
      const until = coolingDown.get(coolKey);
      if (until !== undefined && until > Date.now()) {
        sendError(c, 'RATE_LIMITED', 'cooling down after rate limit abuse');
        closeConn(c, WS_CLOSE_POLICY, 'rate limit abuse');
        return;
      }
      if (until !== undefined) coolingDown.delete(coolKey);
      // Membership: kicked or departed participants, expired or full contacts are refused.
      const admittedAt = Date.now();
      emitAdmission(
        opts.webhooks,
        await contacts.admit(principal, admittedAt, policy),
        principal.participantId,
        admittedAt,
      );
      const head = await store.head(principal.contactId);
      // closed or timed out meanwhile
      if (c.phase !== 'authenticating' || c.ws.readyState !== WebSocket.OPEN) return;
      c.phase = 'ready';
      c.principal = principal;
      const key = `${principal.contactId}\u0000${principal.participantId}`;
      let pb = participantBytes.get(key);
      if (!pb) participantBytes.set(key, (pb = { bucket: new TokenBucket(byteRate), conns: 0 }));
      pb.conns++;
      c.bytes = pb;
      const untilExpiry = principal.expiresAt + CLOCK_TOLERANCE_SECONDS * 1000 - Date.now();
      c.timers.push(
        setTimeout(
          () => sendError(c, 'AUTH_EXPIRED'),
          Math.min(MAX_TIMER_MS, Math.max(0, untilExpiry)),
        ),
      );
      log({
        event: 'auth',
        conn: c.id,
        contactId: principal.contactId,
        participantId: principal.participantId,
        role: principal.role,
      });
      sendFrame(c, {
        v: PROTOCOL_VERSION,
        type: 'ready',
        contactId: principal.contactId,
        participantId: principal.participantId,
        role: principal.role,
        head,
        maxFrameBytes,
      });
      const early = c.early;
      c.early = [];
      for (const text of early) {
        if (c.phase !== 'ready') break;
        onText(c, text);
      }
    })().catch((err: unknown) => {
      if (c.phase === 'closed') return;
      const e = toLatchkeyError(err);
      if (e.code === 'AUTH_EXPIRED' || e.code === 'AUTH_INVALID') {
        sendError(c, e.code);
      } else {
        failure(c, e);
        closeConn(c, ERROR_CODES[e.code].ws, e.code);
      }
    });
  }

  // ---- join, send, history -----------------------------------------------------------------

  /** Fan-out subscriptions of the contacts that have joined connections here. */
  const contactSubs = new Map<string, FanoutSubscription>();

  /** Disconnects requested on other relays (kick, transfer, expiry); resync after a fan-out outage. */
  const control = fanout.subscribeControl((e) => {
    if (e.type === 'resync') {
      for (const set of subscribers.values()) for (const c of set) catchUp(c);
      return;
    }
    if (e.origin === relayId) return;
    if (e.type === 'rekey') {
      rekey(e.contactId, true);
      return;
    }
    const n = disconnect(e.contactId, e.participantId, e.code, true);
    if (n > 0) log({ event: 'remote-disconnect', contactId: e.contactId, code: e.code, closed: n });
  });

  /** Adds a joining connection; resolves once the contact's fan-out subscription is live. */
  function subscribe(c: Conn, contactId: string): Promise<void> {
    let set = subscribers.get(contactId);
    if (!set) subscribers.set(contactId, (set = new Set()));
    set.add(c);
    let sub = contactSubs.get(contactId);
    if (!sub) contactSubs.set(contactId, (sub = fanout.subscribe(contactId, onFanoutEnvelope)));
    return sub.ready;
  }

  function unsubscribe(c: Conn, contactId: string): void {
    const set = subscribers.get(contactId);
    if (!set) return;
    set.delete(c);
    if (set.size === 0) {
      subscribers.delete(contactId);
      contactSubs.get(contactId)?.unsubscribe();
      contactSubs.delete(contactId);
    }
  }

  function deliverFrame(envelope: StoredEnvelope): string {
    return JSON.stringify({ v: PROTOCOL_VERSION, type: 'deliver', envelope } satisfies ServerFrame);
  }

  /** Moves lastSeq over the connection's own sends (it never gets those delivered). */
  function skipOwn(c: Conn): void {
    while (c.own.delete(c.lastSeq + 1)) c.lastSeq++;
    if (c.own.size > 1024) for (const s of c.own) if (s <= c.lastSeq) c.own.delete(s);
  }

  /** Delivers the envelope right after lastSeq (skipping the connection's own). */
  function deliverNext(c: Conn, e: StoredEnvelope, text?: string): void {
    if (!c.own.delete(e.seq)) sendRaw(c, text ?? deliverFrame(e));
    c.lastSeq = e.seq;
  }

  /**
   * An envelope from the fan-out, for every joined connection of its contact here. Delivered
   * when it is the next seq; dropped when already delivered; a gap (the fan-out reordered or
   * lost something) is filled from the store, which is authoritative.
   */
  function onFanoutEnvelope(e: EnvelopeEvent): void {
    const envelope = e.envelope;
    if (e.origin !== relayId) metrics.fanoutLag.observe((Date.now() - e.at) / 1000);
    const set = subscribers.get(envelope.contactId);
    if (!set) return;
    let text: string | undefined;
    for (const c of set) {
      if ((e.origin === relayId && e.conn === c.id) || c.phase !== 'ready') continue;
      if (c.join === 'joining') {
        c.joinBuffer.push(envelope);
        continue;
      }
      skipOwn(c);
      if (envelope.seq <= c.lastSeq) continue;
      if (envelope.seq === c.lastSeq + 1) {
        deliverNext(c, envelope, (text ??= deliverFrame(envelope)));
        skipOwn(c);
      } else {
        c.joinBuffer.push(envelope);
        catchUp(c);
      }
    }
  }

  /**
   * With live envelopes buffered, replays the log after lastSeq page by page, then drains the
   * buffer in seq order skipping what the replay already sent; a buffered envelope beyond a
   * gap means a smaller seq is still in flight (and already committed), so the store is read
   * again. Nothing is missed, nothing sent twice, the order is the seq order. Returns the head.
   */
  async function replay(c: Conn, contactId: string): Promise<number> {
    let head = 0;
    for (;;) {
      for (;;) {
        const page = await store.history(contactId, c.lastSeq, LIMITS.maxHistoryPage);
        if (c.phase !== 'ready') return head;
        head = Math.max(head, page.head);
        // a cursor past the head (a confused client) must not hide the next messages
        if (c.lastSeq > page.head) c.lastSeq = page.head;
        for (const e of page.envelopes) deliverNext(c, e);
        if (!page.more || page.envelopes.length === 0) break;
      }
      const buffered = c.joinBuffer.sort((a, b) => a.seq - b.seq);
      c.joinBuffer = [];
      for (const e of buffered) {
        skipOwn(c);
        if (e.seq <= c.lastSeq) continue;
        if (e.seq !== c.lastSeq + 1) {
          c.joinBuffer.push(e);
          continue;
        }
        deliverNext(c, e);
        head = Math.max(head, e.seq);
      }
      skipOwn(c);
      if (c.joinBuffer.length === 0) return head;
      metrics.gapRepairs++;
    }
  }

  /** Fills a joined connection's gap from the store (see replay). */
  function catchUp(c: Conn): void {
    const p = c.principal;
    if (!p || c.join !== 'yes' || c.phase !== 'ready') return;
    c.join = 'joining';
    metrics.gapRepairs++;
    replay(c, p.contactId).then(
      () => {
        if (c.join === 'joining') c.join = 'yes';
      },
      (err: unknown) => {
        c.joinBuffer = [];
        failure(c, err);
        // the client resumes from its cursor on another connection
        closeConn(c, ERROR_CODES.UNAVAILABLE.ws, 'UNAVAILABLE');
      },
    );
  }

  /**
   * Subscribes first (and waits until the fan-out subscription is live) while buffering live
   * envelopes, then replays the log after `since` (see replay), then `joined`.
   */
  function onJoin(c: Conn, frame: JoinFrame): void {
    const p = c.principal;
    if (!p) return;
    if (c.join !== 'no') {
      protocolError(c, 'BAD_REQUEST', 'already joined');
      return;
    }
    c.join = 'joining';
    c.joinBuffer = [];
    c.lastSeq = frame.since;
    c.own.clear();
    const ready = subscribe(c, p.contactId);
    void (async () => {
      await ready.catch((err: unknown) => {
        throw new LatchkeyError('UNAVAILABLE', 'fan-out unavailable', {
          cause: err,
          detail: `fanout: ${err instanceof Error ? err.name : typeof err}`,
        });
      });
      if (c.phase !== 'ready') return;
      const head = await replay(c, p.contactId);
      if (c.phase !== 'ready') return;
      c.join = 'yes';
      sendFrame(c, { v: PROTOCOL_VERSION, type: 'joined', head });
    })().catch((err: unknown) => {
      unsubscribe(c, p.contactId);
      c.join = 'no';
      c.joinBuffer = [];
      failure(c, err);
    });
  }

  function onSend(c: Conn, frame: SendFrame): void {
    const p = c.principal;
    if (!p) return;
    const env = frame.envelope;
    const ref = { msgId: env.msgId };
    if (!SENDING_ROLES.has(p.role)) {
      protocolError(c, 'FORBIDDEN', 'this role may not send', ref);
      return;
    }
    if (env.contactId !== p.contactId || env.senderId !== p.participantId) {
      protocolError(c, 'FORBIDDEN', 'envelope contact or sender does not match the token', ref);
      return;
    }
    if (closing) {
      sendError(c, 'UNAVAILABLE', 'relay is shutting down', ref);
      return;
    }
    committer.submit(env).then(
      (r) => {
        if (!r.ok) {
          sendError(c, r.code, undefined, ref);
          return;
        }
        sendFrame(c, {
          v: PROTOCOL_VERSION,
          type: 'ack',
          msgId: env.msgId,
          seq: r.seq,
          duplicate: r.duplicate,
        });
        if (r.duplicate) return;
        emitMessageStored(opts.webhooks, r.envelope, Date.now());
        if (c.join !== 'no') {
          c.own.add(r.seq);
          skipOwn(c);
        }
        fanout
          .publish({
            type: 'envelope',
            envelope: r.envelope,
            origin: relayId,
            conn: c.id,
            at: Date.now(),
          })
          .catch(() => {
            // Receivers elsewhere see the gap at the next envelope and read it from the store.
            metrics.fanoutPublishFailures++;
            log({ event: 'fanout-publish-failed', contactId: env.contactId });
          });
      },
      (err: unknown) => failure(c, err, ref),
    );
  }

  function onHistory(c: Conn, frame: HistoryRequestFrame): void {
    const p = c.principal;
    if (!p) return;
    const ref = { id: frame.id };
    store.history(p.contactId, frame.since, frame.limit ?? LIMITS.maxHistoryPage).then(
      (page) => {
        let { envelopes, more } = page;
        let bytes = 0;
        const cut = envelopes.findIndex(
          (e, i) => (bytes += JSON.stringify(e).length) > maxHistoryBytes && i > 0,
        );
        if (cut > 0) {
          envelopes = envelopes.slice(0, cut);
          more = true;
        }
        sendFrame(c, {
          v: PROTOCOL_VERSION,
          type: 'history',
          id: frame.id,
          envelopes,
          head: page.head,
          more,
        });
      },
      (err: unknown) => failure(c, err, ref),
    );
  }

  // ---- serving -----------------------------------------------------------------------------

  function attach(server: HttpServer | HttpsServer): void {
    if (closing) throw new LatchkeyError('UNAVAILABLE', 'relay is closed');
    if (attached.has(server)) return;
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      if (closing) {
        socket.destroy();
        return;
      }
      const ip = clientIp(req);
      const refused = admission.admit(req, ip);
      if (refused) {
        log({ event: 'upgrade-refused', code: refused.code });
        refuseUpgrade(socket, refused);
        return;
      }
      // The TCP socket outlives every path (refused handshake, open, closed), so it releases.
      socket.once('close', () => admission.release(ip));
      try {
        wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, ip));
      } catch (err) {
        log({ event: 'upgrade-failed', detail: err instanceof Error ? err.message : 'unknown' });
        socket.destroy();
      }
    };
    attached.set(server, onUpgrade);
    server.on('upgrade', onUpgrade);
  }

  const ops = createOpsEndpoints({
    metrics,
    connections: () => conns.size,
    live: () => !closing,
    ready: async () =>
      (
        await Promise.all([
          store.head('readyz').then(
            () => true,
            () => false,
          ),
          fanout.ping(),
        ])
      ).every(Boolean),
    ...(opts.metricsIpAllowlist === undefined
      ? {}
      : { metricsIpAllowlist: opts.metricsIpAllowlist }),
  });

  function handleHttp(req: IncomingMessage, res: ServerResponse): boolean {
    if (ops(req, res)) return true;
    if (!admin || closing) return false;
    return admin.handle(req, res);
  }

  async function listen(o: {
    host: string;
    port: number;
    tls?: TlsOptions;
  }): Promise<{ url: string; port: number }> {
    if (ownServer) throw new Error('relay is already listening');
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      if (handleHttp(req, res)) return;
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
      res.end('WebSocket upgrade required\n');
    };
    const server = o.tls
      ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key, minVersion: 'TLSv1.2' }, onRequest)
      : createServer(onRequest);
    ownServer = server;
    server.maxConnections = opts.maxConnections ?? DEFAULT_RELAY_MAX_CONNECTIONS;
    server.headersTimeout = 10_000;
    server.requestTimeout = 20_000;
    server.keepAliveTimeout = 5_000;
    (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = 2_500;
    attach(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log({ event: 'server-error', detail: err.message }));
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : o.port;
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    log({ event: 'listening', port });
    return { url: `${o.tls ? 'wss' : 'ws'}://${host}:${port}`, port };
  }

  async function doClose(): Promise<void> {
    closing = true;
    for (const [server, listener] of attached) server.off('upgrade', listener);
    attached.clear();
    clearInterval(heartbeat);
    clearInterval(sweeper);
    control.unsubscribe();
    await sweeping;
    await committer.flush();
    const waits = [...conns].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve();
          c.ws.once('close', () => resolve());
          const t = setTimeout(() => c.ws.terminate(), CLOSE_GRACE_MS);
          c.ws.once('close', () => clearTimeout(t));
          closeConn(c, WS_CLOSE_GOING_AWAY, 'going away');
        }),
    );
    await Promise.all(waits);
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    if (ownServer) {
      const server = ownServer;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    if (ownsStore) await store.close();
    log({ event: 'closed' });
  }

  return {
    attach,
    listen,
    close: () => (closed ??= doClose()),
    store,
    contacts,
    handleHttp,
    disconnect,
    get connections() {
      return conns.size;
    },
  };
}
