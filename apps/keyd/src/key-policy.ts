/**
 * What the key service does around each hand-out of a content key (issue 6; docs/key-management.md
 * "Rotation", "Key access log", "Crypto-shredding"): rotation on a schedule (an epoch older than
 * `rotateAfterMs` is rotated at the next fetch of the current key) and on request (a member asks
 * with `rotate: { ifEpoch }` after `rotateAfterMessages` messages; compare-and-set on the epoch
 * and only once the epoch is `minRotateAgeMs` old, so a member cannot spin epochs), the access
 * log (every key handed out or refused), and shredding (every epoch destroyed in the key manager,
 * the contact refused from then on).
 *
 * Rotations of one contact are serialised (`ContactLocks`: in this process on SQLite, across
 * every key service sharing the PostgreSQL state), so two members asking at once, or two key
 * services receiving the same kick, rotate once.
 *
 * The rotation a kick or transfer owes is recorded in the access table with the membership change
 * (`AccessTable.owedRotation`); `settle` performs it and marks it done, and the sweep
 * (`startKeySweep` in key-sweep.ts, at start-up and every few seconds) retries it until the key
 * manager answers, so an admin action is never left half-applied (docs/admin-api.md "Flow").
 *
 * Every rotation emits the webhook `key.rotated`, and the first shred of a contact (admin or
 * retention sweep) `contact.shredded` (docs/webhooks.md), when a webhook service is given. That
 * first shred is also a `destroyed` record in the access log (participant `admin` or
 * `retention`, the newest epoch known), which the access streams forward (docs/siem.md).
 */
import {
  LocalContactLocks,
  type AccessLogStore,
  type AccessRecord,
  type AccessTable,
  type ContactLocks,
  type ContentKey,
  type EpochTimes,
  type KeyManager,
  type StoredAccessRecord,
} from '@latchkey/keys';
import { LatchkeyError, type Principal } from '@latchkey/protocol';
import type { WebhookService } from '@latchkey/webhooks';
import { accessLogBatch, type GroupCommit } from './access-batch.ts';

export interface KeyPolicyOptions {
  keyManager: KeyManager;
  /** Every hand-out and refusal is appended here (fail closed: no record, no key). */
  accessLog?: AccessLogStore;
  /** When each epoch began (needed for `rotateAfterMs` and `minRotateAgeMs`). */
  clock?: EpochTimes;
  /** Membership table: a shredded contact is marked expired there. */
  access?: AccessTable;
  /** One contact's rotations and shreds at a time (default: in this process only). */
  locks?: ContactLocks;
  /** Rotate an epoch older than this at the next fetch of the current key (ms; 0/absent: never). */
  rotateAfterMs?: number;
  /** Tell clients to ask for a rotation after this many messages of one epoch (absent: never). */
  rotateAfterMessages?: number;
  /** A requested rotation happens only when the epoch is at least this old (ms, default 60 s). */
  minRotateAgeMs?: number;
  /** Signed webhooks: `key.rotated` and `contact.shredded` are queued here (never throws). */
  webhooks?: Pick<WebhookService, 'emit'>;
  now?: () => number;
}

/** The state of the rotation an admin action owes: done (to `epoch`, if the contact had a key) or pending. */
export type Settled =
  { pending: false; epoch: number | undefined } | { pending: true; error: LatchkeyError };

/**
 * The owed rotation of a contact, done now when still owed (see `KeyPolicy.settle`); `rotate`
 * answers the new epoch, or undefined when the contact has no key yet.
 */
export async function settleOwed(
  access: AccessTable,
  contactId: string,
  rotate: (contactId: string) => Promise<number | undefined>,
): Promise<Settled> {
  const owed = await access.owedRotation(contactId);
  if (owed === undefined) return { pending: false, epoch: undefined };
  if (owed.state === 'done') return { pending: false, epoch: owed.epoch ?? undefined };
  let epoch: number | undefined;
  try {
    epoch = await rotate(contactId);
  } catch (err) {
    const e = asKeyError(err);
    try {
      await access.rotationFailed(contactId, owed.seq, `${e.code}: ${e.message}`);
    } catch {
      // Still owed either way.
    }
    return { pending: true, error: e };
  }
  try {
    // A removal recorded meanwhile owes a rotation of its own (another seq): it stays owed.
    await access.rotationDone(contactId, owed.seq, epoch ?? null);
  } catch {
    // Rotated; the record says owed still, so the sweep rotates once more (harmless).
  }
  return { pending: false, epoch };
}

export interface HandOut {
  key: ContentKey;
  rotated: boolean;
}

/** A key-manager failure as the wire error: typed errors pass, anything else is KEY_UNAVAILABLE. */
export function asKeyError(err: unknown): LatchkeyError {
  if (LatchkeyError.is(err)) return err;
  return new LatchkeyError('KEY_UNAVAILABLE', 'key manager unavailable', {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

export class KeyPolicy {
  readonly rotateAfterMessages: number | undefined;
  readonly #km: KeyManager;
  readonly #log: AccessLogStore | undefined;
  /** Hand-outs are recorded through a group commit (access-batch.ts). */
  readonly #granted: GroupCommit<AccessRecord, StoredAccessRecord> | undefined;
  readonly #clock: EpochTimes | undefined;
  readonly #access: AccessTable | undefined;
  readonly #hooks: Pick<WebhookService, 'emit'> | undefined;
  readonly #rotateAfterMs: number;
  readonly #minAge: number;
  readonly #now: () => number;
  readonly #locks: ContactLocks;

  /** @throws RangeError for a negative or non-integer setting. */
  constructor(opts: KeyPolicyOptions) {
    for (const [name, v] of Object.entries({
      rotateAfterMs: opts.rotateAfterMs,
      rotateAfterMessages: opts.rotateAfterMessages,
      minRotateAgeMs: opts.minRotateAgeMs,
    })) {
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
        throw new RangeError(`${name} must be a non-negative integer`);
    }
    this.#km = opts.keyManager;
    this.#log = opts.accessLog;
    this.#granted = opts.accessLog && accessLogBatch(opts.accessLog);
    this.#clock = opts.clock;
    this.#access = opts.access;
    this.#locks = opts.locks ?? new LocalContactLocks();
    this.#hooks = opts.webhooks;
    this.#rotateAfterMs = opts.rotateAfterMs ?? 0;
    this.rotateAfterMessages =
      opts.rotateAfterMessages === 0 ? undefined : opts.rotateAfterMessages;
    this.#minAge = opts.minRotateAgeMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Runs `fn` after every earlier call for the same contact has finished (in any key service sharing the locks). */
  #serial<T>(contactId: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(contactId, fn);
  }

  /** Age in ms of the contact's current epoch, or undefined when the contact has no key yet. */
  async #age(contactId: string): Promise<{ epoch: number; age: number } | undefined> {
    let epoch: number;
    try {
      epoch = await this.#km.currentEpoch(contactId);
    } catch (err) {
      if (LatchkeyError.is(err, 'NOT_FOUND')) return undefined;
      throw asKeyError(err);
    }
    const now = this.#now();
    let since: number;
    try {
      since = (await this.#clock?.since(contactId, epoch, now)) ?? now;
    } catch (err) {
      throw asKeyError(err);
    }
    return { epoch, age: now - since };
  }

  /**
   * Adds an epoch (kick, transfer, schedule, request) and dates it. A contact without keys yet
   * has nothing to rotate (undefined).
   * @throws LatchkeyError KEY_UNAVAILABLE when the key manager fails.
   */
  rotate(contactId: string): Promise<number | undefined> {
    return this.#serial(contactId, () => this.#rotateNow(contactId));
  }

  /**
   * Performs the rotation a kick or transfer owes the contact (recorded in the access table with
   * the membership change) and marks it done. Idempotent: when it is done already, answers the
   * epoch it rotated to; nothing recorded, nothing to do. On failure the rotation stays owed
   * (the attempt is counted) for the sweep or the next call.
   */
  settle(contactId: string): Promise<Settled> {
    const access = this.#access;
    if (!access) return this.rotate(contactId).then((epoch) => ({ pending: false, epoch }));
    return this.#serial(contactId, () =>
      settleOwed(access, contactId, (id) => this.#rotateNow(id)),
    );
  }

  async #rotateNow(contactId: string): Promise<number | undefined> {
    let epoch: number;
    try {
      epoch = await this.#km.rotate(contactId);
    } catch (err) {
      if (LatchkeyError.is(err, 'NOT_FOUND')) return undefined;
      throw asKeyError(err);
    }
    const now = this.#now();
    try {
      await this.#clock?.began(contactId, epoch, now);
    } catch {
      // Rotated either way; the epoch is dated at its first hand-out instead.
    }
    this.#hooks?.emit('key.rotated', { contactId, epoch, time: now });
    return epoch;
  }

  /**
   * The content key the principal asked for, after any rotation due, recorded in the access log.
   * @throws LatchkeyError NOT_FOUND (no such epoch, shredded contact), KEY_UNAVAILABLE.
   */
  async handOut(
    p: Principal,
    req: { epoch?: number | undefined; rotate?: { ifEpoch: number } | undefined },
  ): Promise<HandOut> {
    const contactId = p.contactId;
    let rotated = false;
    try {
      if (req.epoch === undefined && (req.rotate !== undefined || this.#rotateAfterMs > 0)) {
        rotated = await this.#serial(contactId, async () => {
          const cur = await this.#age(contactId);
          if (cur === undefined) return false;
          const due =
            req.rotate !== undefined
              ? req.rotate.ifEpoch === cur.epoch && cur.age >= this.#minAge
              : cur.age >= this.#rotateAfterMs;
          return due && (await this.#rotateNow(contactId)) !== undefined;
        });
      }
      const key = await this.#km.getContentKey(contactId, req.epoch).catch((err: unknown) => {
        throw asKeyError(err);
      });
      try {
        // The first hand-out dates an epoch made elsewhere (epoch 0 on creation).
        await this.#clock?.since(contactId, key.currentEpoch, this.#now());
        // Committed before the key leaves; grouped with the other hand-outs of this loop turn.
        await this.#granted?.submit({
          contactId: p.contactId,
          participantId: p.participantId,
          epoch: key.epoch,
          time: this.#now(),
          outcome: 'granted',
        });
      } catch (err) {
        key.key.fill(0);
        throw asKeyError(err);
      }
      return { key, rotated };
    } catch (err) {
      const e = asKeyError(err);
      if (!(e.code === 'KEY_UNAVAILABLE' && e.message.startsWith('key access log'))) {
        await this.#tryRecord(
          p,
          req.epoch ?? 0,
          e.code === 'KEY_UNAVAILABLE' || e.code === 'UNAVAILABLE' ? 'unavailable' : 'denied',
        );
      }
      throw e;
    }
  }

  /**
   * The contact's current epoch and the known start times of its epochs, for an epoch statement.
   * @throws LatchkeyError NOT_FOUND (no key yet, or shredded), KEY_UNAVAILABLE.
   */
  async epochFacts(
    contactId: string,
  ): Promise<{ epoch: number; epochs: { epoch: number; since: number }[] }> {
    const epoch = await this.#km.currentEpoch(contactId).catch((err: unknown) => {
      throw asKeyError(err);
    });
    return { epoch, epochs: await this.epochTimes(contactId) };
  }

  /** Known start times of a contact's epochs (empty without an epoch clock). */
  async epochTimes(contactId: string): Promise<{ epoch: number; since: number }[]> {
    try {
      return (await this.#clock?.epochs(contactId)) ?? [];
    } catch (err) {
      throw asKeyError(err);
    }
  }

  /**
   * Appends one record to the access log (no-op without one).
   * @throws LatchkeyError KEY_UNAVAILABLE when the log cannot be written.
   */
  async record(
    p: { contactId: string; participantId: string },
    epoch: number,
    outcome: 'granted' | 'denied' | 'unavailable' | 'destroyed',
  ): Promise<void> {
    await this.#log?.append({
      contactId: p.contactId,
      participantId: p.participantId,
      epoch,
      time: this.#now(),
      outcome,
    });
  }

  /** Records a refusal; a log failure must not hide the refusal's own error. */
  async #tryRecord(
    p: { contactId: string; participantId: string },
    epoch: number,
    outcome: 'denied' | 'unavailable' | 'destroyed',
  ): Promise<void> {
    try {
      await this.record(p, epoch, outcome);
    } catch {
      // The refusal stands either way.
    }
  }

  /** A refusal before the request body was read (membership): logged with epoch 0. */
  refused(p: { contactId: string; participantId: string }): Promise<void> {
    return this.#tryRecord(p, 0, 'denied');
  }

  /**
   * Crypto-shredding: destroys every epoch in the key manager (tombstoned, never re-created),
   * forgets the epoch dates and marks the contact expired, so it is refused from then on.
   * Idempotent: `contact.shredded` is emitted, and a `destroyed` record appended to the access
   * log (participant `by`), when the contact still had keys or was live in the membership
   * table, so a repeated shred (or the sweep after an admin shred) emits and records nothing.
   * The contact is marked expired first, so it is refused at once even when the key manager then
   * fails (a retry destroys the keys).
   * @throws LatchkeyError KEY_UNAVAILABLE when the key manager fails (the keys stay until a retry).
   */
  shred(contactId: string, by: 'admin' | 'retention' = 'admin'): Promise<void> {
    return this.#serial(contactId, async () => {
      const first =
        (this.#hooks !== undefined || this.#log !== undefined) && (await this.#wasLive(contactId));
      // The newest epoch known (dated by the epoch clock), before the shred forgets them.
      let epoch = 0;
      try {
        for (const e of (await this.#clock?.epochs(contactId)) ?? [])
          epoch = Math.max(epoch, e.epoch);
      } catch {
        // Unknown: 0.
      }
      // Refused from now on, in every key service sharing the membership table, before the key
      // manager is asked: a shred while it is down (or answering from the degraded-mode cache
      // elsewhere) still ends every hand-out at once; a retry destroys the keys.
      let marking: unknown;
      try {
        const at = this.#now();
        await this.#access?.setExpiry(contactId, at, at);
      } catch (err) {
        // Already expired, or never seen: refused either way.
        if (!LatchkeyError.is(err, 'CONTACT_EXPIRED') && !LatchkeyError.is(err, 'NOT_FOUND'))
          marking = err;
      }
      await this.#km.destroy(contactId).catch((err: unknown) => {
        throw asKeyError(err);
      });
      await this.#clock?.forget(contactId);
      const now = this.#now();
      // Destroyed either way; a log that cannot be written does not undo it.
      if (first) await this.#tryRecord({ contactId, participantId: by }, epoch, 'destroyed');
      if (first) this.#hooks?.emit('contact.shredded', { contactId, time: now });
      // The keys are gone; the membership table could not be marked: report it.
      if (marking !== undefined) throw marking;
    });
  }

  /** Has the contact keys, or is it open in the membership table (not yet shredded)? */
  async #wasLive(contactId: string): Promise<boolean> {
    const now = this.#now();
    try {
      const info = await this.#access?.contact(contactId, now);
      if (info && info.state !== 'expired' && info.expiresAt > now) return true;
    } catch {
      // Membership table unavailable: the key manager decides.
    }
    try {
      await this.#km.currentEpoch(contactId);
      return true;
    } catch (err) {
      // Unknown or already destroyed: nothing left to shred. Any other failure: report it.
      return !LatchkeyError.is(err, 'NOT_FOUND');
    }
  }
}
