/**
 * Fan-out over Redis pub/sub (docs/operations.md "Fan-out"; the contract and the in-process one
 * are in fanout.ts). Its own module, loaded through `@latchkey/relay/redis`, so that a relay on
 * SQLite alone never loads ioredis.
 */
import { Redis } from 'ioredis';
import {
  Registry,
  contactChannelOf,
  type ContactEvent,
  type ControlEvent,
  type Fanout,
  type FanoutEvent,
  type FanoutSubscription,
} from './fanout.ts';

export interface RedisFanoutOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** Channel name prefix (default `latchkey:`), to share one Redis between deployments. */
  prefix?: string;
  /** Failures and reconnects (no content). */
  log?: (event: { event: string; detail?: string }) => void;
}

/**
 * Redis pub/sub: channel `<prefix>c:<contactId>` per contact for its envelopes and signals (a relay subscribes while it has a
 * joined connection of the contact) and `<prefix>control` for disconnects and rekeys. One connection
 * publishes, one subscribes (a subscribed Redis connection can do nothing else).
 */
export class RedisFanout implements Fanout {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #reg = new Registry<ContactEvent | ControlEvent>();
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
    const contactId = contactChannelOf(event);
    // Signals go on the contact's channel too: members joined to other relays get them.
    const channel = contactId === undefined ? this.#control : this.#channel(contactId);
    // The stored JSON stays local: receivers build their deliver frames from the envelope.
    const wire = event.type === 'envelope' ? { ...event, json: undefined } : event;
    await this.#pub.publish(channel, JSON.stringify(wire));
  }

  subscribe(contactId: string, handler: (e: ContactEvent) => void): FanoutSubscription {
    return this.#subscribe(
      this.#channel(contactId),
      handler as (e: ContactEvent | ControlEvent) => void,
    );
  }

  subscribeControl(handler: (e: ControlEvent) => void): FanoutSubscription {
    return this.#subscribe(this.#control, handler as (e: ContactEvent | ControlEvent) => void);
  }

  #subscribe(channel: string, h: (e: ContactEvent | ControlEvent) => void): FanoutSubscription {
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
