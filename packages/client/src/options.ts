/**
 * What a `LatchkeyClient` is given and what it emits (docs/protocol.md, README "Client SDK"):
 * the client's options and their defaults, the options of one send, and the events with their
 * payloads.
 */
import { fromBase64Url } from '@latchkey/crypto/codec';
import { FRESHNESS, type LatchkeyError } from '@latchkey/protocol';
import type { ConnectionState, WebSocketConstructor } from './connection.ts';
import type { KeyDeliveryMode } from './key-delivery.ts';
import type { Identity, KeySessionOptions } from './key-session.ts';
import type { FetchLike } from './key-service.ts';
import { MemoryOutbox, type OutboxStore } from './outbox.ts';
import type { TranscriptCheckpoint } from './transcript.ts';
import type { SeenEvent, TypingEvent } from './signals.ts';
import type { ChatMessage, FailedMessage, ScanUpdate } from './types.ts';

export interface ClientOptions {
  relayUrl: string;
  keysUrl: string;
  token: string;
  /** WebSocket implementation; defaults to globalThis.WebSocket (pass `ws` in Node 20). */
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
  /** Pinned Ed25519 key of the key service (32 bytes or base64url). Fetched when absent. */
  serviceKey?: Uint8Array | string;
  /** Resume point: messages with seq > since are emitted. Default 0 (the whole history). */
  since?: number;
  /**
   * The transcript checkpoint at `since` (from `checkpoint()` of an earlier client), so that the
   * transcript checks go on across the resume; without it, what the senders had seen before
   * `since` cannot be checked.
   */
  checkpoint?: TranscriptCheckpoint | null;
  /** Subscribe to live delivery (default true). False: only history reads and sends. */
  live?: boolean;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  backoff?: { minMs: number; maxMs: number };
  /** Clock in ms (tests). */
  now?: () => number;
  /**
   * How content keys travel from the key service: sealed with HPKE to a per-session key
   * (`x25519`, the default, or the post-quantum hybrid `xwing`), or `plain` (TLS only).
   */
  keyDelivery?: KeyDeliveryMode;
  /**
   * Ask the key service to rotate once this many messages (counted by seq) were sent under the
   * current epoch. Default: what the key service says (`rotateAfterMessages`), else never.
   */
  rotateAfterMessages?: number;
  /**
   * Where sealed, unacknowledged envelopes wait (default: in memory). With a persistent store
   * (`IndexedDbOutbox` in browsers) `connect` sends what an earlier session left, once, in
   * order, before anything new, and emits each as a `pending` event first.
   */
  outbox?: OutboxStore;
  /**
   * Longest age (ms, by this client's clock) of the epoch statement a message may be sealed
   * under; an older one is fetched again first. Default FRESHNESS.maxAgeMs (10 s); at most that.
   */
  statementMaxAgeMs?: number;
  /**
   * The deployment runs a scanner (docs/operations.md "Scanning attachments"): files are
   * `pending`, and refused by `openFile`, until a scanner's verdict says `clean`. Default false:
   * files show as `unscanned`.
   */
  scanning?: boolean;
  /** The relay's HTTP origin for files; default: the relay URL's, ws→http and wss→https. */
  filesUrl?: string;
}

/** An own message restored from the outbox store: sealed earlier, not yet acknowledged. */
export interface PendingMessage {
  msgId: string;
  sentAt: number;
  text: string;
}

/** Options of one `send`. */
export interface SendOptions {
  /**
   * The message id to seal under (16-64 of `[A-Za-z0-9_-]`), so that a UI can tie the send to
   * its `pending`, `message` and outbox records before the ack. Default: 16 random bytes.
   */
  msgId?: string;
}

/** What a client takes from its options: each given one, else its default. */
export interface ResolvedOptions {
  fetch: FetchLike;
  WebSocket: WebSocketConstructor;
  now: () => number;
  outbox: OutboxStore;
  /** The pinned key-service key as bytes; null: fetched at connect. */
  serviceKey: Uint8Array | null;
}

/**
 * The options with their defaults: the global fetch and WebSocket, `Date.now`, an in-memory
 * outbox.
 * @throws TypeError when there is no fetch or WebSocket; on a malformed base64url `serviceKey`
 */
export function withDefaults(opts: ClientOptions): ResolvedOptions {
  const f = opts.fetch ?? (globalThis.fetch as FetchLike | undefined);
  const W = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!f) throw new TypeError('no fetch implementation: pass options.fetch');
  if (!W)
    throw new TypeError(
      'no WebSocket implementation: pass options.WebSocket (e.g. the ws package)',
    );
  const outbox = opts.outbox ?? new MemoryOutbox();
  const key = opts.serviceKey;
  return {
    fetch: f,
    WebSocket: W,
    now: opts.now ?? Date.now,
    outbox,
    serviceKey: key === undefined ? null : typeof key === 'string' ? fromBase64Url(key) : key,
  };
}

/** The events of a client and what each carries. */
export interface ClientEvents extends Record<string, unknown> {
  message: ChatMessage;
  failed: FailedMessage;
  state: ConnectionState;
  error: LatchkeyError;
  pending: PendingMessage;
  /** The client adopted a new current epoch (from a signed statement): the badge follows it. */
  epoch: { epoch: number; fingerprint: string };
  /** A scanner's verdict changed a file's scan state. */
  scan: ScanUpdate;
  /** Another member started or stopped typing (a start expires after 6 s without a refresh). */
  typing: TypingEvent;
  /** Another member's signed receipt: it has read every message up to `seq`. */
  seen: SeenEvent;
  /** Another member's signed receipt: its client has received every message up to `seq`. */
  delivered: SeenEvent;
}

/** What the key session of a client with `opts` is given. */
export function keySessionOptions(
  opts: ClientOptions,
  o: ResolvedOptions,
  identity: Identity,
  serviceKey: Uint8Array,
  on: Pick<KeySessionOptions, 'onEpoch' | 'onError'>,
): KeySessionOptions {
  return {
    fetch: o.fetch,
    keysUrl: opts.keysUrl,
    token: opts.token,
    identity,
    serviceKey,
    keyDelivery: opts.keyDelivery ?? 'x25519',
    now: () => o.now(),
    maxAgeMs: Math.min(opts.statementMaxAgeMs ?? FRESHNESS.maxAgeMs, FRESHNESS.maxAgeMs),
    rotateAfterMessages: opts.rotateAfterMessages,
    ...on,
  };
}
