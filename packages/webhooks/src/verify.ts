/**
 * Verification for Node receivers (Standard Webhooks, "Verifying webhook authenticity"): the
 * signature over `id.timestamp.body` is compared in constant time against each `v1,` signature
 * of the header; the timestamp must lie within a tolerance window (default 5 minutes) of the
 * receiver's clock; and an id seen before is refused, so a captured request cannot be played
 * again. A re-timestamped request fails the signature (the timestamp is signed).
 */
import { timingSafeEqual } from 'node:crypto';
import { signatureFor } from './signing.ts';

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  constructor(
    readonly reason:
      'MISSING_HEADERS' | 'BAD_TIMESTAMP' | 'TOO_OLD' | 'TOO_NEW' | 'BAD_SIGNATURE' | 'REPLAYED',
    message: string,
  ) {
    super(message);
  }
}

/** Remembers ids of accepted webhooks for as long as their timestamp is within the window. */
export interface ReplayGuard {
  /** Records the id; returns false when it was seen already. */
  firstSeen(id: string, timestampSeconds: number, nowSeconds: number): boolean;
}

/** An in-memory ReplayGuard (one process). Use a shared store when several receivers share the load. */
export function createReplayGuard(toleranceSeconds = 300): ReplayGuard {
  const seen = new Map<string, number>();
  return {
    firstSeen(id, ts, now) {
      for (const [k, t] of seen) {
        if (t >= now - 2 * toleranceSeconds) break;
        seen.delete(k);
      }
      if (seen.has(id)) return false;
      seen.set(id, Math.max(ts, now));
      return true;
    },
  };
}

export interface VerifyOptions {
  /** Seconds between the webhook's timestamp and now that are accepted (default 300). */
  toleranceSeconds?: number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** Refuses an id seen before; pass `false` to skip (not recommended). */
  replayGuard?: ReplayGuard | false;
}

type HeaderBag = Record<string, string | string[] | undefined> | Headers;

function header(h: HeaderBag, name: string): string | undefined {
  const v = h instanceof Headers ? (h.get(name) ?? undefined) : (h[name] ?? h[name.toLowerCase()]);
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Creates a verifier for one endpoint's secret(s) (give two while rotating on the receiver side).
 * `verify(body, headers)` returns the parsed JSON payload.
 * @throws WebhookVerificationError when a header is missing, the timestamp is outside the window,
 *   no signature matches, or the id was seen before.
 */
export function createWebhookVerifier(
  secrets: string | readonly string[],
  opts: VerifyOptions = {},
) {
  const list = typeof secrets === 'string' ? [secrets] : [...secrets];
  if (list.length === 0) throw new RangeError('at least one secret is needed');
  const tolerance = opts.toleranceSeconds ?? 300;
  const now = opts.now ?? Date.now;
  const guard =
    opts.replayGuard === false ? undefined : (opts.replayGuard ?? createReplayGuard(tolerance));

  return {
    verify(body: string | Uint8Array, headers: HeaderBag): unknown {
      const id = header(headers, 'webhook-id');
      const ts = header(headers, 'webhook-timestamp');
      const sig = header(headers, 'webhook-signature');
      if (!id || !ts || !sig)
        throw new WebhookVerificationError('MISSING_HEADERS', 'missing webhook headers');
      if (!/^\d{1,12}$/.test(ts))
        throw new WebhookVerificationError('BAD_TIMESTAMP', 'invalid timestamp');
      const t = Number(ts);
      const nowS = Math.floor(now() / 1000);
      if (t < nowS - tolerance) throw new WebhookVerificationError('TOO_OLD', 'timestamp too old');
      if (t > nowS + tolerance) throw new WebhookVerificationError('TOO_NEW', 'timestamp too new');
      const presented = sig
        .split(' ')
        .filter((s) => s.startsWith('v1,'))
        .map((s) => Buffer.from(s.slice(3), 'base64'));
      let ok = false;
      for (const secret of list) {
        const expected = Buffer.from(signatureFor(secret, id, t, body).slice(3), 'base64');
        for (const p of presented) {
          // Compare every candidate: no early exit that would tell which one matched.
          if (p.length === expected.length && timingSafeEqual(p, expected)) ok = true;
        }
      }
      if (!ok) throw new WebhookVerificationError('BAD_SIGNATURE', 'no matching signature');
      if (guard && !guard.firstSeen(id, t, nowS))
        throw new WebhookVerificationError('REPLAYED', 'webhook id seen before');
      const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
      return JSON.parse(text) as unknown;
    },
  };
}

/** One-shot convenience: verifies with a fresh verifier (no replay memory across calls). */
export function verifyWebhook(
  secrets: string | readonly string[],
  body: string | Uint8Array,
  headers: HeaderBag,
  opts: VerifyOptions = {},
): unknown {
  return createWebhookVerifier(secrets, opts).verify(body, headers);
}
