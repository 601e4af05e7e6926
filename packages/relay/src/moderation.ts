/**
 * Moderation and the contact lifecycle on the relay: ending the connections of a kicked or
 * departed participant or of an expired contact, telling the others to fetch a rotated key
 * (`rekey`), crypto-shredding, and the sweep that expires contacts and calls retention. Each
 * request made here is published to the other relays through the fan-out's control channel,
 * and theirs arrive the same way. Admin requests come in through admin-api.ts.
 */
import {
  LatchkeyError,
  PROTOCOL_VERSION,
  toLatchkeyError,
  type ErrorCode,
} from '@latchkey/protocol';
import type { WebhookService } from '@latchkey/webhooks';
import type { Connection } from './connection.ts';
import type { ContactStreams } from './contact-stream.ts';
import type { ContactStore, RetentionHook } from './contacts.ts';
import type { ControlEvent, Fanout, FanoutSubscription } from './fanout.ts';
import type { RelayMetrics } from './metrics.ts';
import type { RelayLogEvent } from './options.ts';
import type { FileService } from './files/service.ts';
import type { CiphertextShredder } from './shred.ts';

export interface ModerationOptions {
  /** The open connections of this relay. */
  connections: Iterable<Connection>;
  streams: Pick<ContactStreams<Connection>, 'leave' | 'resync'>;
  fanout: Pick<Fanout, 'publish' | 'subscribeControl'>;
  relayId: string;
  metrics: Pick<RelayMetrics, 'fanoutPublishFailures'>;
  contacts: Pick<ContactStore, 'expireDue' | 'setExpiry'>;
  retention: RetentionHook;
  shredder: CiphertextShredder | undefined;
  webhooks: Pick<WebhookService, 'emit'> | undefined;
  /** How often expired contacts are swept (ms). */
  expirySweepMs: number;
  log: (event: RelayLogEvent) => void;
  /** The file store: a shredded contact's blobs go with its ciphertext; the sweep ends stale uploads. */
  files?: Pick<FileService, 'deleteContact' | 'sweep'>;
  /** Whether an expired contact's blobs are deleted (retention does not keep ciphertext). */
  deleteFilesOnExpiry?: boolean;
}

export class Moderation {
  readonly #o: ModerationOptions;
  readonly #sweeper: NodeJS.Timeout;
  readonly #control: FanoutSubscription;
  #sweeping: Promise<void> | undefined;

  constructor(opts: ModerationOptions) {
    this.#o = opts;
    this.#sweeper = setInterval(() => void this.sweepExpired(), opts.expirySweepMs);
    this.#sweeper.unref();
    this.#control = opts.fanout.subscribeControl((e) => this.#onControl(e));
  }

  /**
   * Ends connections of a contact (all, or one participant's) with `code`, here and (unless the
   * request came from the fan-out) on every other relay. Returns how many closed here.
   */
  disconnect(
    contactId: string,
    participantId: string | null,
    code: ErrorCode,
    fromFanout = false,
  ): number {
    if (!fromFanout) {
      this.#publish(contactId, {
        type: 'disconnect',
        contactId,
        participantId,
        code,
        origin: this.#o.relayId,
        at: Date.now(),
      });
    }
    let n = 0;
    for (const c of this.#o.connections) {
      const p = c.principal;
      if (
        !p ||
        p.contactId !== contactId ||
        (participantId !== null && p.participantId !== participantId)
      )
        continue;
      if (c.phase === 'closed') continue;
      n++;
      // FORBIDDEN does not close by itself (a refused frame), but a removal does.
      c.end(code, code === 'FORBIDDEN' ? 'removed from this contact' : undefined);
      this.#o.streams.leave(c);
    }
    return n;
  }

  /**
   * Tells every remaining connection of a contact to fetch the current content key, here and
   * (unless the request came from the fan-out) on every other relay, like `disconnect`.
   */
  rekey(contactId: string, fromFanout = false): void {
    if (!fromFanout) {
      this.#publish(contactId, {
        type: 'rekey',
        contactId,
        origin: this.#o.relayId,
        at: Date.now(),
      });
    }
    for (const c of this.#o.connections) {
      if (c.ready && c.principal?.contactId === contactId)
        c.send({ v: PROTOCOL_VERSION, type: 'rekey' });
    }
  }

  /** A kick or transfer: the participant's connections end, the others fetch the new epoch. */
  kicked(contactId: string, participantId: string): number {
    const n = this.disconnect(contactId, participantId, 'FORBIDDEN');
    // The key service rotated before this call: the others fetch the new epoch.
    this.rekey(contactId);
    return n;
  }

  /**
   * Crypto-shredding on the relay: the contact expires at once, its ciphertext is deleted.
   * @throws LatchkeyError NOT_FOUND without a shredder; the store's errors.
   */
  async shred(contactId: string): Promise<number> {
    const now = Date.now();
    await this.#o.contacts.setExpiry(contactId, now, now).catch((err: unknown) => {
      if (!LatchkeyError.is(err, 'CONTACT_EXPIRED') && !LatchkeyError.is(err, 'NOT_FOUND'))
        throw err;
    });
    const closed = this.disconnect(contactId, null, 'CONTACT_EXPIRED');
    if (!this.#o.shredder) throw new LatchkeyError('NOT_FOUND', 'no shredder configured');
    const deleted = await this.#o.shredder.deleteContact(contactId);
    const files = (await this.#o.files?.deleteContact(contactId)) ?? 0;
    this.#o.log({ event: 'contact-shredded', contactId, closed, deleted, files });
    return deleted;
  }

  /** Marks contacts past their expiry as expired, ends their connections, calls retention. */
  sweepExpired(): Promise<void> {
    const o = this.#o;
    return (this.#sweeping ??= (async () => {
      try {
        const now = Date.now();
        for (const contactId of await o.contacts.expireDue(now)) {
          const n = this.disconnect(contactId, null, 'CONTACT_EXPIRED');
          o.log({ event: 'contact-expired', contactId, closed: n });
          o.webhooks?.emit('contact.expired', { contactId, time: now });
          await o.retention.contactExpired(contactId, now).catch((err: unknown) =>
            o.log({
              event: 'retention-failed',
              contactId,
              detail: err instanceof Error ? err.name : typeof err,
            }),
          );
          if (o.files && o.deleteFilesOnExpiry)
            await o.files
              .deleteContact(contactId)
              .catch((err: unknown) =>
                o.log({ event: 'retention-failed', contactId, code: toLatchkeyError(err).code }),
              );
        }
        await o.files?.sweep(now);
      } catch (err) {
        o.log({ event: 'sweep-failed', code: toLatchkeyError(err).code });
      } finally {
        this.#sweeping = undefined;
      }
    })());
  }

  /** Stops the sweep and the control subscription; settles once a running sweep has. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#control.unsubscribe();
    await this.#sweeping;
  }

  #publish(contactId: string, event: Parameters<Fanout['publish']>[0]): void {
    this.#o.fanout.publish(event).catch(() => {
      this.#o.metrics.fanoutPublishFailures++;
      this.#o.log({ event: 'fanout-publish-failed', contactId });
    });
  }

  /** Disconnects and rekeys requested on other relays; resync after a fan-out outage. */
  #onControl(e: ControlEvent): void {
    if (e.type === 'resync') {
      this.#o.streams.resync();
      return;
    }
    if (e.origin === this.#o.relayId) return;
    if (e.type === 'rekey') {
      this.rekey(e.contactId, true);
      return;
    }
    const n = this.disconnect(e.contactId, e.participantId, e.code, true);
    if (n > 0)
      this.#o.log({ event: 'remote-disconnect', contactId: e.contactId, code: e.code, closed: n });
  }
}
