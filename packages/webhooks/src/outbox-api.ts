/**
 * What the webhook service (service.ts) and the admin routes need of an outbox: the SQLite one
 * (outbox.ts, synchronous, one process) and the PostgreSQL one (outbox-pg.ts, asynchronous,
 * shared by every process on one database) both provide it. A method may answer with a value or
 * a promise; callers await either.
 */
import { randomBytes } from 'node:crypto';
import type {
  DeadLetter,
  WebhookEndpointInfo,
  WebhookError,
  WebhookEventType,
} from '@latchkey/protocol';
import type { Awaitable } from '@latchkey/storage';
import type { EventData } from './events.ts';

/** A delivery that is due: what to send where. */
export interface DueDelivery {
  endpointId: string;
  url: string;
  secrets: string[];
  eventSeq: number;
  eventId: string;
  /** The event's number for this endpoint (`sequence` in the body). */
  sequence: number;
  /** The body to sign and send, `sequence` included. */
  payload: string;
  attempts: number;
  /**
   * PostgreSQL: this process's claim on the delivery ends then (ms); another process may take
   * it over afterwards. Undefined on SQLite (one process, no claims).
   */
  leaseUntil?: number;
}

export interface WebhookOutboxStore {
  /** PostgreSQL: how long a claim lasts (ms); the service checks calls end well before. */
  readonly leaseMs?: number;
  /** PostgreSQL: how often other processes' events are looked for (ms). */
  readonly pollMs?: number;
  /** Resolves once the outbox is open (schema migrated, key checked); rejects with why not. */
  ready?(): Promise<void>;
  /** Resolves once every event queued so far is written (an outbox that writes later). */
  flush?(): Promise<void>;
  addEndpoint(
    e: {
      url: string;
      events?: readonly WebhookEventType[] | undefined;
      description?: string | undefined;
    },
    now: number,
  ): Promise<{ endpoint: WebhookEndpointInfo; secret: string }>;
  rotateSecret(
    id: string,
    now: number,
    overlapMs?: number,
  ): Promise<{ endpoint: WebhookEndpointInfo; secret: string }>;
  removeEndpoint(id: string): Awaitable<boolean>;
  endpoint(id: string, now: number): Awaitable<WebhookEndpointInfo | null>;
  listEndpoints(now: number): Awaitable<WebhookEndpointInfo[]>;
  secrets(id: string, now: number): Promise<string[]>;
  /** Queues an event under `id` (default a fresh one); null when no endpoint wants it. */
  emit<T extends WebhookEventType>(
    type: T,
    data: EventData<T>,
    now: number,
    id?: string,
  ): Awaitable<string | null>;
  /**
   * Head deliveries due at `now` (PostgreSQL: claimed for this process, at most `limit`), and
   * when to look again.
   */
  due(
    now: number,
    busy?: ReadonlySet<string>,
    limit?: number,
  ): Promise<{ due: DueDelivery[]; nextAt: number | null }>;
  /** PostgreSQL: gives up a claim that will not be attempted now. */
  release?(endpointId: string, eventSeq: number): Promise<void>;
  /** Records a delivery; false (PostgreSQL) when this process's claim on it was taken over. */
  delivered(endpointId: string, eventSeq: number, now: number): Awaitable<boolean | void>;
  failed(
    endpointId: string,
    eventSeq: number,
    error: WebhookError,
    now: number,
  ): Awaitable<boolean>;
  recordTest(endpointId: string, error: WebhookError | null, now: number): Awaitable<void>;
  deadLetters(endpointId: string, limit?: number): Awaitable<DeadLetter[]>;
  replay(endpointId: string, now: number, eventIds?: readonly string[]): Awaitable<number>;
  retry(endpointId: string, now: number): Awaitable<{ pending: number; dead: number }>;
  prune(before: number): Awaitable<number>;
  close(): Awaitable<void>;
}

/** The body of one call: the stored event with the endpoint's sequence number in it. */
export function bodyWithSequence(payload: string, sequence: number): string {
  const p = JSON.parse(payload) as { type: string; timestamp: string; data: unknown };
  return JSON.stringify({ type: p.type, timestamp: p.timestamp, sequence, data: p.data });
}

export function randomId(prefix: string): string {
  return prefix + randomBytes(16).toString('base64url');
}
