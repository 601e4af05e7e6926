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
 * usually complete; `InProcessFanout` (one relay) is exact, `RedisFanout` (pub/sub, in
 * redis-fanout.ts so that only a relay that chooses it loads ioredis) may reorder between
 * publishers or drop during a Redis outage, which the relay repairs.
 */
import { randomBytes } from 'node:crypto';
import type { ErrorCode, SealedSignal, StoredEnvelope } from '@latchkey/protocol';

/** A committed envelope, published by the relay that stored it. */
export interface EnvelopeEvent {
  type: 'envelope';
  envelope: StoredEnvelope;
  /** Relay id of the publisher and its connection that sent it (not delivered back to it). */
  origin: string;
  conn: number;
  /** Publish time (ms, publisher's clock) for the fan-out lag metric. */
  at: number;
  /**
   * The envelope's canonical JSON as stored (without seq), when the publisher has it: local
   * deliver frames are built around it (in process only, never published).
   */
  json?: string;
}

/**
 * An ephemeral signal (typing, seen; sealed, never stored) for the members of its contact joined
 * to any relay, published on the contact's channel like envelopes; lost ones are not repaired.
 */
export interface SignalEvent {
  type: 'signal';
  contactId: string;
  /** The sender's participant id, as its token authenticated it. */
  from: string;
  signal: SealedSignal;
  /** Relay id of the publisher and its sending connection (not delivered back to it). */
  origin: string;
  conn: number;
  at: number;
}

/** What a contact's channel carries. */
export type ContactEvent = EnvelopeEvent | SignalEvent;

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

export type FanoutEvent = EnvelopeEvent | SignalEvent | DisconnectEvent | RekeyEvent;

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
  /** Envelopes and signals of one contact. */
  subscribe(contactId: string, handler: (e: ContactEvent) => void): FanoutSubscription;
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

/** Subscriptions keyed by channel, with their handlers (shared with redis-fanout.ts). */
export class Registry<E> {
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

/** The contact whose channel carries `event`, or undefined for a control event. */
export function contactChannelOf(event: FanoutEvent): string | undefined {
  if (event.type === 'envelope') return event.envelope.contactId;
  if (event.type === 'signal') return event.contactId;
  return undefined;
}

/** One relay, no network: delivers synchronously within the process (the default). */
export class InProcessFanout implements Fanout {
  readonly #reg = new Registry<ContactEvent | ControlEvent>();

  publish(event: FanoutEvent): Promise<void> {
    this.#reg.emit(contactChannelOf(event) ?? CONTROL, event);
    return Promise.resolve();
  }

  subscribe(contactId: string, handler: (e: ContactEvent) => void): FanoutSubscription {
    return this.#sub(contactId, handler as (e: ContactEvent | ControlEvent) => void);
  }

  subscribeControl(handler: (e: ControlEvent) => void): FanoutSubscription {
    return this.#sub(CONTROL, handler as (e: ContactEvent | ControlEvent) => void);
  }

  #sub(channel: string, h: (e: ContactEvent | ControlEvent) => void): FanoutSubscription {
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
