/**
 * Limits one participant carries across its connections to this relay: the inbound byte bucket
 * (counted before a frame is parsed, so a flooding participant costs little CPU) and the
 * cool-down after it was cut off for rate abuse (its next connections are refused before any
 * store work). Per-connection frame limits live in connection.ts.
 */
import type { Principal } from '@latchkey/protocol';
import { TokenBucket, type RateLimitOptions } from './limiter.ts';

/** How long a participant closed for rate abuse is refused (on this relay). */
export const RATE_ABUSE_COOLDOWN_MS = 10_000;

/** A connection's share of its participant's byte bucket, until `release`. */
export interface ByteLease {
  readonly bucket: TokenBucket;
  /** Idempotent. */
  release(): void;
}

interface Shared {
  bucket: TokenBucket;
  conns: number;
}

const keyOf = (p: Principal): string => `${p.contactId}\u0000${p.participantId}`;

export class ParticipantLimits {
  readonly #byteRate: RateLimitOptions;
  readonly #now: () => number;
  /** Participants closed for rate abuse, until when their new connections are refused. */
  readonly #coolingDown = new Map<string, number>();
  /** Byte buckets of the participants connected here. */
  readonly #bytes = new Map<string, Shared>();

  constructor(byteRate: RateLimitOptions, now: () => number = Date.now) {
    this.#byteRate = byteRate;
    this.#now = now;
  }

  /** Starts the participant's cool-down after rate abuse (at `now`). */
  coolDown(p: Principal, now = this.#now()): void {
    this.#coolingDown.set(keyOf(p), now + RATE_ABUSE_COOLDOWN_MS);
  }

  /** True while the participant is cooling down; a finished cool-down is forgotten. */
  coolingDown(p: Principal): boolean {
    const key = keyOf(p);
    const until = this.#coolingDown.get(key);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#coolingDown.delete(key);
    return false;
  }

  /** Shares the participant's byte bucket with one more connection. */
  acquireBytes(p: Principal): ByteLease {
    const key = keyOf(p);
    let shared = this.#bytes.get(key);
    if (!shared) {
      shared = { bucket: new TokenBucket(this.#byteRate, this.#now), conns: 0 };
      this.#bytes.set(key, shared);
    }
    shared.conns++;
    const s = shared;
    let released = false;
    return {
      bucket: s.bucket,
      release: () => {
        if (released) return;
        released = true;
        s.conns--;
      },
    };
  }

  /**
   * Forgets finished cool-downs, and the buckets of participants with no connection here once
   * full again (a bucket outlives its connections until then, so reconnecting does not refill it).
   */
  sweep(): void {
    for (const [key, s] of this.#bytes) {
      if (s.conns <= 0 && s.bucket.waitMs(this.#byteRate.burst) === 0) this.#bytes.delete(key);
    }
    const now = this.#now();
    for (const [key, until] of this.#coolingDown) if (until <= now) this.#coolingDown.delete(key);
  }
}
