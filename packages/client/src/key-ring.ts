/**
 * The client's key ring (docs/threat-model.md "Membership and epochs"): the content keys it holds
 * by epoch, and the newest epoch statement of its contact, checked against the key service's
 * pinned key. The current epoch, the members and who left when come only from these statements,
 * never from the relay. A statement never goes backwards: an older or replayed one is ignored.
 *
 * Freshness is measured by this client's own clock from the moment a statement arrived (the key
 * service's clock may differ), so "at most FRESHNESS.maxAgeMs old" holds whatever the skew.
 */
import { fromBase64Url, utf8Decode } from '@latchkey/crypto/codec';
import { verifyWithContextAsync } from '@latchkey/crypto/sign';
import {
  EpochStatementBody,
  LatchkeyError,
  STATEMENT_CONTEXT,
  type EpochStatement,
} from '@latchkey/protocol';

const fail = (detail: string): LatchkeyError =>
  new LatchkeyError('INTEGRITY', 'epoch statement invalid', { detail });

/**
 * Checks an epoch statement's signature by `serviceKey` and that it names `contactId`.
 * @throws LatchkeyError INTEGRITY when it does not hold (details stay local).
 */
export async function verifyStatement(
  st: EpochStatement,
  serviceKey: Uint8Array,
  contactId: string,
): Promise<EpochStatementBody> {
  let bytes: Uint8Array;
  let sig: Uint8Array;
  try {
    bytes = fromBase64Url(st.body);
    sig = fromBase64Url(st.sig);
  } catch {
    throw fail('statement encoding');
  }
  if (!(await verifyWithContextAsync(serviceKey, STATEMENT_CONTEXT, bytes, sig)))
    throw fail('statement signature');
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(bytes));
  } catch {
    throw fail('statement body is not JSON');
  }
  const parsed = EpochStatementBody.safeParse(json);
  if (!parsed.success) throw fail('statement body schema');
  if (parsed.data.contactId !== contactId) throw fail('statement names another contact');
  return parsed.data;
}

/** What the transcript checks need to know of the contact's membership and epochs. */
export interface StatementView {
  /** The current epoch as last stated. */
  readonly epoch: number;
  /** When the participant was removed (kicked, left), or undefined while it is not. */
  removedAt(participantId: string): number | undefined;
  /** When `epoch` was superseded (the start of the next stated epoch), or undefined. */
  supersededAt(epoch: number): number | undefined;
}

export class KeyRing implements StatementView {
  readonly #serviceKey: Uint8Array;
  readonly #contactId: string;
  #statement: EpochStatementBody | null = null;
  #receivedAt = Number.NEGATIVE_INFINITY;
  readonly #keys = new Map<number, Uint8Array>();

  constructor(serviceKey: Uint8Array, contactId: string) {
    this.#serviceKey = serviceKey;
    this.#contactId = contactId;
  }

  /**
   * Verifies and adopts a statement received at `now` (this client's clock). One that is older
   * than the held one (lower epoch, or earlier issuedAt) is ignored; an equal or newer one
   * refreshes the age.
   * @returns true when the stated epoch moved forward.
   * @throws LatchkeyError INTEGRITY when it is not signed by the key service or names another contact.
   */
  async adopt(st: EpochStatement, now: number): Promise<boolean> {
    const body = await verifyStatement(st, this.#serviceKey, this.#contactId);
    const cur = this.#statement;
    if (cur !== null && (body.epoch < cur.epoch || body.issuedAt < cur.issuedAt)) return false;
    this.#statement = body;
    this.#receivedAt = Math.max(this.#receivedAt, now);
    return cur === null || body.epoch > cur.epoch;
  }

  /** The held statement, or null before the first. */
  get statement(): EpochStatementBody | null {
    return this.#statement;
  }

  get epoch(): number {
    return this.#statement?.epoch ?? 0;
  }

  /** Treats the held statement as old: the next seal asks the key service first (reconnects). */
  expire(): void {
    this.#receivedAt = Number.NEGATIVE_INFINITY;
  }

  /** Whether the held statement arrived at most `maxAgeMs` before `now`. */
  isFresh(now: number, maxAgeMs: number): boolean {
    return this.#statement !== null && now - this.#receivedAt <= maxAgeMs;
  }

  /** Whether `participantId` is an active member as last stated. */
  isMember(participantId: string): boolean {
    return this.#statement?.members.some((m) => m.participantId === participantId) ?? false;
  }

  removedAt(participantId: string): number | undefined {
    const st = this.#statement;
    if (!st) return undefined;
    if (st.members.some((m) => m.participantId === participantId)) return undefined;
    let at: number | undefined;
    for (const r of st.removed)
      if (r.participantId === participantId) at = at === undefined ? r.at : Math.min(at, r.at);
    return at;
  }

  supersededAt(epoch: number): number | undefined {
    const st = this.#statement;
    if (!st || epoch >= st.epoch) return undefined;
    let at: number | undefined;
    for (const e of st.epochs)
      if (e.epoch > epoch && (at === undefined || e.since < at)) at = e.since;
    return at;
  }

  /**
   * Whether the statement shows a removal after its current epoch began: the key service owes a
   * rotation (its key manager may be down). Nobody may seal then: the removed member still holds
   * the current key.
   */
  rotationOwed(): boolean {
    const st = this.#statement;
    if (!st) return false;
    const since = st.epochs.find((e) => e.epoch === st.epoch)?.since;
    if (since === undefined) return false;
    return st.removed.some((r) => r.at > since);
  }

  setKey(epoch: number, key: Uint8Array): void {
    this.#keys.set(epoch, key);
  }

  key(epoch: number): Uint8Array | undefined {
    return this.#keys.get(epoch);
  }
}
