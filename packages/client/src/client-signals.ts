/**
 * The event and signal half of the client's public API, inherited by `LatchkeyClient` (client.ts
 * emits through `events` and wires `signals`): subscribing to events, and typing indicators and
 * seen receipts (docs/protocol.md "Signals: typing and seen"; what each does is in signals.ts).
 */
import { ClientFileMethods } from './client-files.ts';
import { Emitter } from './events.ts';
import type { ClientEvents } from './options.ts';
import type { Signals } from './signals.ts';

export abstract class ClientSignalMethods extends ClientFileMethods {
  /** What the client emits ('typing', 'seen' and 'state' are not kept while nobody listens). */
  protected readonly events = new Emitter<ClientEvents>([
    'message',
    'failed',
    'error',
    'pending',
    'epoch',
    'scan',
  ]);
  /** The client's signals (set by the client's constructor). */
  protected abstract readonly signals: Signals;

  /**
   * Subscribes to an event. Events fired before the first listener of their kind (for example
   * while `connect()` is pending) wait for it, in order: none is lost.
   */
  on<K extends keyof ClientEvents & string>(
    event: K,
    listener: (value: ClientEvents[K]) => void,
  ): () => void {
    return this.events.on(event, listener);
  }

  /**
   * Tells the other members we are typing (`start`, throttled to one per 3 s, stopping by itself
   * after 5 s without another start) or no longer (`stop`). Best effort: never throws.
   */
  typing(state: 'start' | 'stop'): void {
    this.signals.typing(state);
  }

  /**
   * Tells the other members, in a signed receipt, that we have read every message up to `seq`.
   * Monotonic (a lower seq is ignored) and throttled. Best effort: never throws.
   */
  markSeen(seq: number): void {
    this.signals.receipt('seen', seq);
  }

  /**
   * Tells the other members, in a signed receipt, that this client has received every message up
   * to `seq` (what a sender shows as delivered). Monotonic and throttled. Never throws.
   */
  markDelivered(seq: number): void {
    this.signals.receipt('delivered', seq);
  }

  /** Signals received that failed a check and were dropped. */
  get signalsDropped(): number {
    return this.signals.dropped;
  }
}
