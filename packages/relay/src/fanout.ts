/**
 * Fan-out between relays (issue 9; design in docs/operations.md "Fan-out"). After a commit the
 * relay publishes the stored envelope; every relay with a joined connection of that contact
 * receives it and delivers it to its local connections. Control events (a participant or a
 * whole contact disconnected: kick, transfer, expiry; a contact's key rotated: rekey) go to
 * every relay.
 *
 * The store, not the fan-out, is the authority on order: seqs are assigned by the store, a
 * relay delivers per connection in seq order, drops what it already delivered, and on a gap
 * reads the missing envelopes from the store. The fan-out therefore only has to be fast and
 * usually complete; `InProcessFanout` (one relay) is exact, `RedisFanout` (pub/sub) may
 * reorder between publishers or drop during a Redis outage, which the relay repairs.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { ErrorCode, StoredEnvelope } from '@latchkey/protocol';

/** A committed envelope, published by the relay that stored it. */
export interface EnvelopeEvent {
  type: 'envelope';
  envelope: StoredEnvelope;
  /** Relay id of the publisher and its connection that sent it (not delivered back to it). */
  origin: string;
  conn: number;
  /** Publish time (ms, publisher's clock) for the fan-out lag metric. */
  at: number;
}

/** End connections of a contact (participantId null: all of them) with an error code. */
export interface DisconnectEvent {
  type: 'disconnect';
  contactId: string;
  participantId: string | null;
  code: ErrorCode;
  origin: string;
  at: number;
}

/** A contact's content key was rotated (kick, transfer): its connections must fetch it again. */
export interface RekeyEvent {
  type: 'rekey';
  contactId: string;
  origin: string;
  at: number;
}

/**
 * Emitted locally (never published) when the fan-out may have lost events, e.g. after Redis
 * reconnected: every joined connection should catch up from the store.
 */
export interface ResyncEvent {
  type: 'resync';
}

export type FanoutEvent = EnvelopeEvent | DisconnectEvent | RekeyEvent;

/** What control subscribers receive. */
export type ControlEvent = DisconnectEvent | RekeyEvent | ResyncEvent;

export interface FanoutSubscription {
  /** Settles once events published from now on will be received. */
  ready: Promise<void>;
  unsubscribe(): void;
}

export interface Fanout {
  /** Publishes to every relay (this one included). @throws when the fan-out is unreachable. */
  publish(event: FanoutEvent): Promise<void>;
  /** Envelopes of one contact. */
  subscribe(contactId: string, handler: (e: EnvelopeEvent) => void): FanoutSubscription;
  /** Control events of every contact, and local resync notices. */
  subscribeControl(handler: (e: ControlEvent) => void): FanoutSubscription;
  /** True when the fan-out is reachable (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** A random relay id: tells a relay its own events apart. */
export function newRelayId(): string {
  return randomBytes(9).toString('base64url');
}

/** Subscriptions keyed by channel, with their handlers. */
class Registry<E> {
  readonly #handlers = new Map<string, Set<(e: E) => void>>();

  /** Adds a handler; returns true when it is the channel's first. */
  add(channel: string, h: (e: E) => void): boolean {
    let set = this.#handlers.get(channel);
    const first = !set;
    if (!set) this.#handlers.set(channel, (set = new Set()));
    set.add(h);
    return first;
  }

  /** Removes a handler; returns true when the channel has none left. */
  remove(channel: string, h: (e: E) => void): boolean {
    const set = this.#handlers.get(channel);
    if (!set?.delete(h)) return false;
    if (set.size > 0) return false;
    this.#handlers.delete(channel);
    return true;
  }

  emit(channel: string, e: E): void {
    for (const h of [...(this.#handlers.get(channel) ?? [])]) {
      try {
        h(e);
      } catch {
        // one failing handler must not starve the others
      }
    }
  }
}

const CONTROL = '\0control';

/** One relay, no network: delivers synchronously within the process (the default). */
export class InProcessFanout implements Fanout {
  readonly #reg = new Registry<EnvelopeEvent | ControlEvent>();

  publish(event: FanoutEvent): Promise<void> {
    this.#reg.emit(event.type === 'envelope' ? event.envelope.contactId : CONTROL, event);
    return Promise.resolve();
  }

  subscribe(contactId: string, handler: (e: EnvelopeEvent) => void): FanoutSubscription {
    return this.#sub(contactId, handler as (e: EnvelopeEvent | ControlEvent) => void);
  }

  subscribeControl(handler: (e: ControlEvent) => void): FanoutSubscription {
    return this.#sub(CONTROL, handler as (e: EnvelopeEvent | ControlEvent) => void);
  }

  #sub(channel: string, h: (e: EnvelopeEvent | ControlEvent) => void): FanoutSubscription {
    this.#reg.add(channel, h);
    return { ready: Promise.resolve(), unsubscribe: () => void this.#reg.remove(channel, h) };
  }

  ping(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export interface RedisFanoutOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** Channel name prefix (default `latchkey:`), to share one Redis between deployments. */
  prefix?: string;
  /** Failures and reconnects (no content). */
  log?: (event: { event: string; detail?: string }) => void;
}

/**
 * Redis pub/sub: channel `<prefix>c:<contactId>` per contact (a relay subscribes while it has a
 * joined connection of the contact) and `<prefix>control` for disconnects and rekeys. One connection
 * publishes, one subscribes (a subscribed Redis connection can do nothing else).
 */
export class RedisFanout implements Fanout {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #reg = new Registry<EnvelopeEvent | ControlEvent>();
  readonly #log: NonNullable<RedisFanoutOptions['log']>;
  #connectedOnce = false;
  #closed = false;

  constructor(opts: RedisFanoutOptions) {
    this.#prefix = opts.prefix ?? 'latchkey:';
    this.#log = opts.log ?? (() => undefined);
    const common = {
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
      autoResubscribe: true,
      connectTimeout: 5_000,
    };
    this.#pub = new Redis(opts.url, common);
    this.#sub = new Redis(opts.url, common);
    for (const r of [this.#pub, this.#sub]) {
      r.on('error', (err: Error & { code?: string }) =>
        this.#log({ event: 'fanout-error', detail: err.code ?? err.name }),
      );
    }
    this.#sub.on('ready', () => {
      if (this.#connectedOnce) {
        // Events published while we were away are lost: let the relay catch up from the store.
        this.#log({ event: 'fanout-resync' });
        this.#reg.emit(this.#control, { type: 'resync' });
      }
      this.#connectedOnce = true;
    });
    this.#sub.on('message', (channel: string, text: string) => {
      let e: FanoutEvent;
      try {
        e = JSON.parse(text) as FanoutEvent;
      } catch {
        this.#log({ event: 'fanout-bad-message' });
        return;
      }
      this.#reg.emit(channel, e);
    });
  }

  get #control(): string {
    return `${this.#prefix}control`;
  }

  #channel(contactId: string): string {
    return `${this.#prefix}c:${contactId}`;
  }

  async publish(event: FanoutEvent): Promise<void> {
    const channel =
      event.type === 'envelope' ? this.#channel(event.envelope.contactId) : this.#control;
    await this.#pub.publish(channel, JSON.stringify(event));
  }

  subscribe(contactId: string, handler: (e: EnvelopeEvent) => void): FanoutSubscription {
    return this.#subscribe(
      this.#channel(contactId),
      handler as (e: EnvelopeEvent | ControlEvent) => void,
    );
  }

  subscribeControl(handler: (e: ControlEvent) => void): FanoutSubscription {
    return this.#subscribe(this.#control, handler as (e: EnvelopeEvent | ControlEvent) => void);
  }

  #subscribe(channel: string, h: (e: EnvelopeEvent | ControlEvent) => void): FanoutSubscription {
    const first = this.#reg.add(channel, h);
    // Commands on one connection run in order, so a quick unsubscribe/subscribe pair is safe.
    const ready = first ? this.#sub.subscribe(channel).then(() => undefined) : Promise.resolve();
    ready.catch(() => undefined);
    return {
      ready,
      unsubscribe: () => {
        if (this.#reg.remove(channel, h) && !this.#closed) {
          this.#sub.unsubscribe(channel).catch(() => undefined);
        }
      },
    };
  }

  async ping(): Promise<boolean> {
    if (this.#closed) return false;
    try {
      const answer = await Promise.race([
        this.#pub.ping(),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('timeout')), 2_000).unref(),
        ),
      ]);
      return answer === 'PONG' && this.#sub.status === 'ready';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([this.#pub.quit(), this.#sub.quit()]);
    this.#pub.disconnect();
    this.#sub.disconnect();
  }
}
