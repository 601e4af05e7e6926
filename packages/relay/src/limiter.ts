/**
 * Per-connection token bucket: `perSecond` frames refill continuously up to `burst`. Each
 * incoming frame takes one token; a frame that finds the bucket empty is refused with
 * RATE_LIMITED. Refusals are counted in a sliding window so that sustained abuse can be cut off.
 */

export interface RateLimitOptions {
  /** Sustained frames per second. */
  perSecond: number;
  /** Bucket size: frames allowed in one burst. */
  burst: number;
}

/** Default: generous for a person typing, tight for a flood. */
export const DEFAULT_RATE_LIMIT: RateLimitOptions = { perSecond: 100, burst: 200 };

export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  /** @throws RangeError when perSecond or burst is not a positive finite number. */
  constructor(opts: RateLimitOptions, now: () => number = Date.now) {
    if (!(opts.perSecond > 0) || !Number.isFinite(opts.perSecond))
      throw new RangeError('perSecond must be > 0');
    if (!(opts.burst >= 1) || !Number.isFinite(opts.burst))
      throw new RangeError('burst must be >= 1');
    this.#perMs = opts.perSecond / 1000;
    this.#burst = opts.burst;
    this.#now = now;
    this.#tokens = opts.burst;
    this.#last = now();
  }

  /** Takes `n` tokens (default one); false, taking none, when fewer are left. */
  take(n = 1): boolean {
    const t = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (t - this.#last) * this.#perMs);
    this.#last = t;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Milliseconds until `n` tokens are available again (0: now). */
  waitMs(n = 1): number {
    const t = this.#now();
    const tokens = Math.min(this.#burst, this.#tokens + (t - this.#last) * this.#perMs);
    return tokens >= n ? 0 : Math.ceil((n - tokens) / this.#perMs);
  }
}
