/**
 * The relay: a WebSocket server that authenticates participants, orders and stores their sealed
 * envelopes and fans them out (protocol frames in @latchkey/protocol `frames.ts`). This file
 * only accepts and routes, as ws's server does; the parts live apart:
 *
 * - options.ts: RelayOptions, their defaults and validation;
 * - connection.ts: one peer's socket, writes, typed errors, rate limits, timers, liveness;
 *   participant-limits.ts: a participant's byte rate and cool-down across its connections;
 * - handlers.ts: what each client frame does (auth, join, send, history, ping);
 * - contact-stream.ts: per-contact replay, live delivery in seq order and gap repair;
 * - moderation.ts: kick, rekey, shred, the expiry sweep, and the same from other relays;
 * - server.ts: the upgrade handler (admission) and the HTTP(S) server `listen` starts;
 * - admin-api.ts, metrics.ts: the admin API and the ops endpoints on HTTP;
 * - files/: the encrypted file store and its public HTTP API (`/v1/files`, files/service.ts);
 * - group-commit.ts over timed-store.ts: sends acked once durable, commits metered.
 *
 * Origin/IP allowlists and per-IP limits (admission.ts) are checked before the handshake;
 * storage quotas (quota.ts) by the store in the append's own transaction. Peers only ever see
 * an ErrorFrame with a stable code and a short message. Logs carry codes and opaque ids, never
 * tokens, ciphertext or envelope content. The relay holds no key and opens nothing.
 */
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ERROR_CODES,
  LatchkeyError,
  WS_CLOSE_GOING_AWAY,
  type ErrorCode,
} from '@latchkey/protocol';
import { relayAdminApi } from './admin-api.ts';
import { createFileService, type FileService } from './files/service.ts';
import { Admission } from './admission.ts';
import { Connection } from './connection.ts';
import { ContactStreams } from './contact-stream.ts';
import type { ContactStore } from './contacts.ts';
import { InProcessFanout, newRelayId } from './fanout.ts';
import { GroupCommit } from './group-commit.ts';
import { createFrameHandler } from './handlers.ts';
import { RelayMetrics, createOpsEndpoints } from './metrics.ts';
import { Moderation } from './moderation.ts';
import {
  DEFAULT_RELAY_MAX_CONNECTIONS,
  resolveOptions,
  type RelayOptions,
  type TlsOptions,
} from './options.ts';
import { ParticipantLimits } from './participant-limits.ts';
import { createOwnServer, listenOn, upgradeHandler } from './server.ts';
import type { MessageStore } from './message-store.ts';
import { timedStore } from './timed-store.ts';
import { WriteBatch } from './write-batch.ts';

export {
  DEFAULT_RELAY_MAX_CONNECTIONS,
  type RelayLogEvent,
  type RelayOptions,
  type TlsOptions,
} from './options.ts';

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
   * Serves the admin API (`/admin/v1/...`), the file API (`/v1/files...`) and the ops endpoints
   * on a request of an HTTP server the caller owns (`listen` does this on its own server).
   * Returns false when the path is none of theirs.
   */
  handleHttp(req: IncomingMessage, res: ServerResponse): boolean;
  /**
   * Ends every connection of a participant (or of the whole contact when `participantId` is
   * null) with an error frame of `code` and its close code. Returns how many were closed.
   */
  disconnect(contactId: string, participantId: string | null, code: ErrorCode): number;
  /** Open WebSocket connections. */
  readonly connections: number;
  /** The file service (undefined when the file API is off). */
  readonly files: FileService | undefined;
}

/** Close clients that have not finished the closing handshake by then. */
const CLOSE_GRACE_MS = 2_000;

/**
 * Creates a relay over a message store. Nothing is served until `attach` or `listen`.
 * @throws RangeError on an API secret shorter than 32 bytes or a non-positive limit or quota.
 * @throws LatchkeyError UNAVAILABLE when `store.path` cannot be opened.
 */
export function createRelay(opts: RelayOptions): Relay {
  const config = resolveOptions(opts);
  const { store, contacts, log } = config;
  const admission = new Admission(opts.admission);
  const fanout = opts.fanout ?? new InProcessFanout();
  const relayId = newRelayId();
  const metrics = new RelayMetrics();
  const committer = new GroupCommit(timedStore(store, config.quota, metrics), {
    onError: (err, batchSize) =>
      log({ event: 'commit-failed', code: err.code, batch: batchSize, detail: err.detail }),
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
  });
  const conns = new Set<Connection>();
  const attached = new Map<
    HttpServer | HttpsServer,
    (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  >();
  let ownServer: HttpServer | undefined;
  let closing = false;
  let closed: Promise<void> | undefined;
  let nextConnId = 1;

  const participants = new ParticipantLimits(config.byteRate);
  const streams = new ContactStreams<Connection>({
    store,
    fanout,
    relayId,
    metrics,
    onRepairFailed: (c, err) => {
      c.failure(err);
      // the client resumes from its cursor on another connection
      c.close(ERROR_CODES.UNAVAILABLE.ws, 'UNAVAILABLE');
    },
  });
  const files = createFileService(config, opts, metrics);
  const moderation = new Moderation({
    connections: conns,
    streams,
    fanout,
    relayId,
    metrics,
    contacts,
    retention: config.retention,
    shredder: config.shredder,
    webhooks: opts.webhooks,
    expirySweepMs: config.expirySweepMs,
    log,
    ...(files ? { files, deleteFilesOnExpiry: config.deleteFilesOnExpiry } : {}),
  });
  const onText = createFrameHandler({
    config,
    webhooks: opts.webhooks,
    participants,
    streams,
    committer,
    fanout,
    relayId,
    metrics,
    closing: () => closing,
  });
  const admin = relayAdminApi(config, opts, moderation);
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

  const writes = new WriteBatch();
  const heartbeat = setInterval(() => {
    participants.sweep();
    for (const c of conns) c.heartbeat();
  }, config.heartbeatMs);
  heartbeat.unref();

  function onConnection(ws: WebSocket, ip: string, socket: Duplex): void {
    const c = new Connection(ws, {
      id: nextConnId++,
      ip,
      maxFrameBytes: config.maxFrameBytes,
      maxProtocolErrors: config.maxProtocolErrors,
      authTimeoutMs: config.authTimeoutMs,
      rateLimit: config.rateLimit,
      ipFrames: admission,
      log,
      onText,
      onRateAbuse: (principal, now) => participants.coolDown(principal, now),
      onClose: (closed) => {
        streams.leave(closed);
        conns.delete(closed);
      },
      coalesce: { socket, batch: writes },
    });
    conns.add(c);
    if (closing) c.close(WS_CLOSE_GOING_AWAY, 'going away');
  }

  function attach(server: HttpServer | HttpsServer): void {
    if (closing) throw new LatchkeyError('UNAVAILABLE', 'relay is closed');
    if (attached.has(server)) return;
    const onUpgrade = upgradeHandler({ admission, wss, log, closing: () => closing, onConnection });
    attached.set(server, onUpgrade);
    server.on('upgrade', onUpgrade);
  }

  function handleHttp(req: IncomingMessage, res: ServerResponse): boolean {
    if (ops(req, res)) return true;
    if (files?.handle(req, res)) return true;
    if (!admin || closing) return false;
    return admin.handle(req, res);
  }

  async function listen(o: {
    host: string;
    port: number;
    tls?: TlsOptions;
  }): Promise<{ url: string; port: number }> {
    if (ownServer) throw new Error('relay is already listening');
    const maxConnections = opts.maxConnections ?? DEFAULT_RELAY_MAX_CONNECTIONS;
    const server = (ownServer = createOwnServer(o.tls, maxConnections, handleHttp));
    attach(server);
    return listenOn(server, o, log);
  }

  async function doClose(): Promise<void> {
    closing = true;
    for (const [server, listener] of attached) server.off('upgrade', listener);
    attached.clear();
    clearInterval(heartbeat);
    await moderation.close();
    await committer.flush();
    await Promise.all([...conns].map((c) => c.closeGracefully(CLOSE_GRACE_MS)));
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    if (ownServer) {
      const server = ownServer;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    // Uploads cut off by the close record their offsets before the store goes.
    await files?.close();
    if (config.ownsStore) await store.close();
    log({ event: 'closed' });
  }

  return {
    attach,
    listen,
    close: () => (closed ??= doClose()),
    store,
    contacts,
    handleHttp,
    disconnect: (contactId: string, participantId: string | null, code: ErrorCode) =>
      moderation.disconnect(contactId, participantId, code),
    get connections() {
      return conns.size;
    },
    files,
  };
}
