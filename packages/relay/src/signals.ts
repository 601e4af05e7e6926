/**
 * The relay's part in signals (docs/protocol.md "Signals: typing and seen"): a `signal` frame of
 * a joined member is published on its contact's fan-out channel for the other members connected
 * to any relay, and never stored. The relay cannot read a signal (sealed under the contact key), so
 * it cannot tell typing from seen: it refuses the roles that may send neither (a scanner), a
 * connection not joined to its contact's stream, frames over SIGNAL_LIMITS.maxFrameBytes, and
 * more than SIGNAL_LIMITS.perSecond (burst SIGNAL_LIMITS.burst) per connection (RATE_LIMITED,
 * the connection stays open). Which role may send which kind is checked by receivers against the
 * sender's certificate.
 */
import { SIGNAL_LIMITS, SIGNAL_ROLES, type Role, type SignalFrame } from '@latchkey/protocol';
import type { Connection } from './connection.ts';
import type { Fanout } from './fanout.ts';
import { TokenBucket } from './limiter.ts';

export interface SignalDeps {
  fanout: Pick<Fanout, 'publish'>;
  relayId: string;
  /** Whether the connection has joined its contact's stream. */
  joined: (c: Connection) => boolean;
  /** True once the relay is shutting down. */
  closing: () => boolean;
  /** A publish failed (counted; a lost signal is not repaired). */
  publishFailed: (contactId: string) => void;
}

/** Roles that may send some signal (seen at least). */
const SIGNAL_SENDERS: ReadonlySet<Role> = SIGNAL_ROLES.seen;

/** Returns the handler of `signal` frames; `size` is the frame's length as received. */
export function createSignalHandler(
  deps: SignalDeps,
): (c: Connection, frame: SignalFrame, size: number) => void {
  const buckets = new WeakMap<Connection, TokenBucket>();
  return (c, frame, size) => {
    const p = c.principal;
    if (!p) return;
    const ref = frame.id === undefined ? undefined : { id: frame.id };
    if (!SIGNAL_SENDERS.has(p.role)) {
      c.protocolError('FORBIDDEN', 'this role may not send signals', ref);
      return;
    }
    if (size > SIGNAL_LIMITS.maxFrameBytes) {
      c.protocolError('BAD_FRAME', 'signal too large', ref);
      return;
    }
    if (!deps.joined(c)) {
      c.protocolError('BAD_REQUEST', 'join before sending signals', ref);
      return;
    }
    let bucket = buckets.get(c);
    if (!bucket) {
      bucket = new TokenBucket({ perSecond: SIGNAL_LIMITS.perSecond, burst: SIGNAL_LIMITS.burst });
      buckets.set(c, bucket);
    }
    if (!bucket.take()) {
      c.error('RATE_LIMITED', 'signal rate limit exceeded', ref);
      return;
    }
    if (deps.closing()) return;
    deps.fanout
      .publish({
        type: 'signal',
        contactId: p.contactId,
        from: p.participantId,
        signal: frame.signal,
        origin: deps.relayId,
        conn: c.id,
        at: Date.now(),
      })
      .catch(() => deps.publishFailed(p.contactId));
  };
}
