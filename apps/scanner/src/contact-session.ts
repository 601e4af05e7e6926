/**
 * The scanner in one contact: a Latchkey client connected as the participant with role
 * `scanner` (it fetches the contact's key like any member), the contact's history and live
 * messages as that client delivers them, and the files it still has to judge: every file message
 * that no scanner's verdict names yet. Files are judged once the client has caught up with what
 * the relay said it stored (so a verdict further on in the history is seen first), at most
 * `concurrency` at a time across contacts, and each verdict is posted as a signed message.
 *
 * The session closes when it was idle for `idleTimeoutMs` (nothing left to judge), when its
 * token nears expiry, when the client gives up (kicked, contact expired), or when asked.
 */
import type { ChatMessage, FailedMessage, LatchkeyClient } from '@latchkey/client';
import { LatchkeyError } from '@latchkey/protocol';
import { judgeFile, type JudgeDeps } from './judge.ts';
import type { Limiter } from './limiter.ts';
import type { ScannerLog } from './log.ts';

export interface SessionDeps {
  judge: JudgeDeps;
  limiter: Limiter;
  log: ScannerLog;
  /** The engine line for verdicts (clamd's VERSION), or undefined when unknown. */
  engine(): Promise<string | undefined>;
  idleTimeoutMs: number;
  /** How long the session may live (its token's lifetime, less a margin). */
  maxLifetimeMs: number;
  /** How long to wait for the client to catch up with the relay's head before judging anyway. */
  catchUpMs: number;
  /** Called once when the session closed (for whatever reason). */
  onClosed(s: ContactSession): void;
}

type FileMessage = ChatMessage & { file: NonNullable<ChatMessage['file']> };

export class ContactSession {
  readonly contactId: string;
  readonly #client: LatchkeyClient;
  readonly #d: SessionDeps;
  /** msgIds of file messages a scanner's verdict names. */
  readonly #judged = new Set<string>();
  /** File messages not judged yet, by msgId. */
  readonly #pending = new Map<string, FileMessage>();
  readonly #inflight = new Set<string>();
  readonly #abort = new AbortController();
  readonly #openedAt = Date.now();
  /** Highest seq the relay said it stored (webhooks), and highest the client delivered. */
  #head = 0;
  #seen = 0;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #catchUp: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  private constructor(contactId: string, client: LatchkeyClient, deps: SessionDeps) {
    this.contactId = contactId;
    this.#client = client;
    this.#d = deps;
  }

  /**
   * Subscribes to `client` (not yet connected), then connects it.
   * @throws LatchkeyError from `connect` (AUTH_*, FORBIDDEN, CONTACT_FULL, KEY_UNAVAILABLE, ...)
   */
  static async open(
    contactId: string,
    client: LatchkeyClient,
    deps: SessionDeps,
  ): Promise<ContactSession> {
    const s = new ContactSession(contactId, client, deps);
    client.on('message', (m) => s.#onMessage(m));
    client.on('failed', (m) => s.#onFailed(m));
    client.on('error', (e) => {
      deps.log({ event: 'client.error', contactId, code: e.code });
      if (LatchkeyError.is(e, 'AUTH_EXPIRED') || LatchkeyError.is(e, 'CONTACT_EXPIRED'))
        s.close(e.code);
    });
    try {
      await client.connect();
    } catch (err) {
      s.#closed = true;
      client.close();
      throw err;
    }
    client.on('state', (state) => {
      if (state === 'closed') s.close('client-closed');
    });
    s.#touch();
    return s;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Files waiting or being judged. */
  get backlog(): number {
    return this.#pending.size;
  }

  /** The relay stored message `seq` (a webhook said so). */
  stored(seq: number): void {
    if (this.#closed) return;
    this.#head = Math.max(this.#head, seq);
    this.#touch();
    this.#pump();
  }

  #onMessage(m: ChatMessage): void {
    this.#seen = Math.max(this.#seen, m.seq);
    this.#touch();
    if (m.verdict && m.senderRole === 'scanner') {
      this.#judged.add(m.verdict.ref);
      if (!this.#inflight.has(m.verdict.ref)) this.#pending.delete(m.verdict.ref);
    } else if (m.file && !this.#judged.has(m.msgId)) {
      this.#pending.set(m.msgId, m as FileMessage);
    }
    this.#pump();
  }

  #onFailed(m: FailedMessage): void {
    this.#seen = Math.max(this.#seen, m.seq);
    this.#d.log({ event: 'message.failed', contactId: this.contactId, seq: m.seq, code: m.code });
    this.#pump();
  }

  /** Starts judging what waits, once the client has caught up (or waited long enough). */
  #pump(force = false): void {
    if (this.#closed || this.#pending.size === this.#inflight.size) return;
    const caughtUp = this.#seen >= this.#head || this.#client.lastSeq >= this.#head;
    if (!caughtUp && !force) {
      this.#catchUp ??= setTimeout(() => {
        this.#catchUp = undefined;
        this.#pump(true);
      }, this.#d.catchUpMs);
      return;
    }
    clearTimeout(this.#catchUp);
    this.#catchUp = undefined;
    for (const m of this.#pending.values()) {
      if (this.#inflight.has(m.msgId)) continue;
      this.#inflight.add(m.msgId);
      void this.#d.limiter
        .run(() => this.#judge(m))
        .catch((err: unknown) =>
          this.#d.log({
            event: 'scan.failed',
            contactId: this.contactId,
            msgId: m.msgId,
            seq: m.seq,
            code: LatchkeyError.is(err) ? err.code : 'INTERNAL',
          }),
        )
        .finally(() => {
          this.#inflight.delete(m.msgId);
          if (this.#judged.has(m.msgId)) this.#pending.delete(m.msgId);
          this.#touch();
        });
    }
  }

  async #judge(m: FileMessage): Promise<void> {
    if (this.#closed || this.#judged.has(m.msgId)) return;
    const ids = { contactId: this.contactId, msgId: m.msgId, seq: m.seq };
    const started = Date.now();
    const j = await judgeFile(
      () => this.#client.openFile(m.seq),
      m.file.size,
      {
        ...this.#d.judge,
        onRetry: (attempt, code) => this.#d.log({ event: 'scan.retry', ...ids, attempt, code }),
      },
      this.#abort.signal,
    );
    if (!j || this.#closed) return;
    if (this.#judged.has(m.msgId)) {
      // Another scanner judged it meanwhile: one verdict is enough.
      this.#d.log({ event: 'scan.superseded', ...ids });
      return;
    }
    const engine = await this.#d.engine();
    await this.#client.sendVerdict({
      ref: m.msgId,
      sha256: m.file.sha256,
      verdict: j.verdict,
      ...(j.signature === undefined ? {} : { signature: j.signature }),
      ...(engine === undefined ? {} : { engine }),
    });
    this.#judged.add(m.msgId);
    this.#d.log({
      event: 'scan.verdict',
      ...ids,
      verdict: j.verdict,
      code: j.code,
      ...(j.signature === undefined ? {} : { signature: j.signature }),
      ...(j.detail === undefined ? {} : { detail: j.detail }),
      bytes: m.file.size,
      ms: Date.now() - started,
    });
  }

  #touch(): void {
    if (this.#closed) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => this.#idleCheck(), this.#d.idleTimeoutMs);
  }

  #idleCheck(): void {
    const old = Date.now() - this.#openedAt >= this.#d.maxLifetimeMs;
    if (this.#inflight.size > 0 || (this.#pending.size > 0 && !old)) {
      this.#touch();
      return;
    }
    this.close(old ? 'lifetime' : 'idle');
  }

  /** Closes the client; a judging in progress stops without a verdict. Idempotent. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idle);
    clearTimeout(this.#catchUp);
    this.#abort.abort();
    this.#client.close();
    this.#d.log({ event: 'contact.closed', contactId: this.contactId, code: reason });
    this.#d.onClosed(this);
  }
}
