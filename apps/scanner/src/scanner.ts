/**
 * The scanner service (docs/operations.md "Scanning attachments"; docs/threat-model.md "The
 * scanner"): a webhook receiver for the relay's `message.stored` events that, for each contact
 * with a new message, keeps a Latchkey client connected as the contact's participant with role
 * `scanner` (a token it mints itself with the API secret, as the enterprise's backend does),
 * judges every file no scanner has judged yet with clamd, and posts each verdict as a message
 * signed with its certified session key. Idle contacts are let go; scans are bounded in number.
 */
import { WebSocket } from 'ws';
import { LatchkeyClient, type ClientOptions, type WebSocketConstructor } from '@latchkey/client';
import { LatchkeyError, MAX_TOKEN_TTL_SECONDS } from '@latchkey/protocol';
import { mintToken, type TokenSigningKey } from '@latchkey/tokens';
import type { WebhookPayload } from '@latchkey/webhooks';
import { ClamdClient, CLAMD_DEFAULT_STREAM_MAX, type ClamdAddress } from './clamd.ts';
import { ContactSession, type SessionDeps } from './contact-session.ts';
import { Limiter } from './limiter.ts';
import { jsonLog, type ScannerLog } from './log.ts';
import { startReceiver } from './webhook-receiver.ts';

export interface ScannerOptions {
  relayUrl: string;
  keysUrl: string;
  /** The API secret (HS256) or the backend's Ed25519 private key: mints the scanner's tokens. */
  tokenKey: TokenSigningKey;
  /**
   * The relay webhook endpoint's secret(s) (`whsec_...`; two while rotating). Empty: calls are
   * answered 503 (delivered again later) until `setWebhookSecrets` (attach.ts registers first).
   */
  webhookSecrets: readonly string[];
  clamd: ClamdAddress;
  /** The scanner's participant id in every contact (default `scanner`). */
  participantId?: string;
  /** Where the webhook receiver listens (default 127.0.0.1, port 0 picks one). */
  host?: string;
  port?: number;
  path?: string;
  /** Largest file judged (plaintext bytes, default clamd's StreamMaxLength): larger is `error`. */
  maxFileBytes?: number;
  /** clamd's StreamMaxLength (default 25 MiB, clamd's default): set it to clamd.conf's. */
  streamMaxLength?: number;
  /** Scans at once across contacts (default 2). */
  concurrency?: number;
  /** A contact's connection closes after this long without activity (ms, default 60 s). */
  idleTimeoutMs?: number;
  /** Further tries when clamd is unreachable or a download fails (default 5). */
  retries?: number;
  /** First delay between tries (ms, default 500; doubles, at most 30 s). */
  retryBaseMs?: number;
  /** Lifetime of the tokens it mints (seconds, default 1 h, at most 24 h). */
  tokenTtlSeconds?: number;
  /** The key service's pinned public key (base64url or bytes); fetched when absent. */
  serviceKey?: Uint8Array | string;
  /** clamd timeouts (ms, default 30 s). */
  clamdTimeoutMs?: number;
  log?: ScannerLog;
  /** Client options for tests (backoff, fetch). */
  client?: Partial<Pick<ClientOptions, 'backoff' | 'fetch' | 'WebSocket' | 'filesUrl'>>;
}

export interface Scanner {
  /** The webhook URL to register on the relay (`latchkey webhooks add --url URL`). */
  url: string;
  /** Contacts with an open connection now. */
  contacts(): string[];
  /** Replaces the webhook secrets (after the endpoint was added, or its secret rotated). */
  setWebhookSecrets(secrets: readonly string[]): void;
  close(): Promise<void>;
}

/** The events a scanner's endpoint needs (`latchkey webhooks add --events ...`). */
export const SCANNER_EVENTS = [
  'message.stored',
  'participant.kicked',
  'contact.expired',
] as const satisfies readonly WebhookPayload['type'][];

/**
 * Starts the scanner: its webhook receiver listens when this resolves.
 * @throws RangeError on a bad limit.
 */
export async function startScanner(opts: ScannerOptions): Promise<Scanner> {
  const participantId = opts.participantId ?? 'scanner';
  const log = opts.log ?? jsonLog();
  const ttl = opts.tokenTtlSeconds ?? 3600;
  if (!Number.isSafeInteger(ttl) || ttl < 60 || ttl > MAX_TOKEN_TTL_SECONDS)
    throw new RangeError(`tokenTtlSeconds must be 60..${MAX_TOKEN_TTL_SECONDS}`);
  const streamMaxLength = opts.streamMaxLength ?? CLAMD_DEFAULT_STREAM_MAX;
  const clamd = new ClamdClient({
    address: opts.clamd,
    streamMaxLength,
    ...(opts.clamdTimeoutMs === undefined ? {} : { timeoutMs: opts.clamdTimeoutMs }),
  });
  const maxFileBytes = Math.min(opts.maxFileBytes ?? streamMaxLength, streamMaxLength);
  const limiter = new Limiter(opts.concurrency ?? 2);
  const retries = opts.retries ?? 5;
  if (!Number.isSafeInteger(retries) || retries < 0) throw new RangeError('retries must be >= 0');

  let engine: { line: string | undefined; at: number } = { line: undefined, at: 0 };
  /** Each contact's session, opening or open; and the open ones, to drop them when they close. */
  const sessions = new Map<string, Promise<ContactSession>>();
  const live = new Map<string, ContactSession>();
  const deps: SessionDeps = {
    judge: {
      clamd,
      maxFileBytes,
      retries,
      retryBaseMs: opts.retryBaseMs ?? 500,
      retryMaxMs: 30_000,
    },
    limiter,
    log,
    async engine() {
      // clamd's version line names its database version: asked again every 10 minutes.
      if (engine.line === undefined || Date.now() - engine.at > 600_000) {
        const line = await clamd.version().catch(() => undefined);
        if (line !== undefined) engine = { line: line.slice(0, 200), at: Date.now() };
      }
      return engine.line;
    },
    idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
    // Reconnects reuse the token: the session ends well before it expires.
    maxLifetimeMs: Math.max(30_000, (ttl - 60) * 1000),
    catchUpMs: 5_000,
    onClosed: (s) => {
      if (live.get(s.contactId) !== s) return;
      live.delete(s.contactId);
      sessions.delete(s.contactId);
    },
  };

  async function openSession(contactId: string): Promise<ContactSession> {
    const token = await mintToken(opts.tokenKey, {
      contactId,
      participantId,
      role: 'scanner',
      ttlSeconds: ttl,
    });
    const client = new LatchkeyClient({
      relayUrl: opts.relayUrl,
      keysUrl: opts.keysUrl,
      token,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      scanning: true,
      ...(opts.serviceKey === undefined ? {} : { serviceKey: opts.serviceKey }),
      ...opts.client,
    });
    const s = await ContactSession.open(contactId, client, deps);
    log({ event: 'contact.opened', contactId });
    return s;
  }

  /** The open session of `contactId`, opened when there is none. */
  function session(contactId: string): Promise<ContactSession> {
    const existing = sessions.get(contactId);
    if (existing) return existing;
    const p = openSession(contactId).then((s) => {
      if (!s.closed) live.set(contactId, s);
      else if (sessions.get(contactId) === p) sessions.delete(contactId);
      return s;
    });
    sessions.set(contactId, p);
    p.catch(() => {
      if (sessions.get(contactId) === p) sessions.delete(contactId);
    });
    return p;
  }

  async function onEvent(e: WebhookPayload): Promise<'done' | 'retry'> {
    if (e.type === 'message.stored') {
      // Its own verdicts come back as events too: nothing to do for them.
      if (e.data.senderId === participantId) return 'done';
      try {
        let s = await session(e.data.contactId);
        // It closed meanwhile (idle, lifetime): a new one replaces it.
        if (s.closed) s = await session(e.data.contactId);
        s.stored(e.data.seq);
        return 'done';
      } catch (err) {
        const code = LatchkeyError.is(err) ? err.code : 'INTERNAL';
        log({ event: 'contact.open-failed', contactId: e.data.contactId, code });
        // The relay delivers the event again later, unless this scanner may never enter.
        const final = ['FORBIDDEN', 'CONTACT_EXPIRED', 'CONTACT_FULL', 'AUTH_INVALID'];
        return final.includes(code) ? 'done' : 'retry';
      }
    }
    if (e.type === 'participant.kicked' && e.data.participantId === participantId)
      await close(e.data.contactId, 'kicked');
    if (e.type === 'contact.expired') await close(e.data.contactId, 'expired');
    return 'done';
  }

  async function close(contactId: string, reason: string): Promise<void> {
    const s = await sessions.get(contactId)?.catch(() => undefined);
    s?.close(reason);
  }

  const receiver = await startReceiver({
    host: opts.host ?? '127.0.0.1',
    port: opts.port ?? 0,
    ...(opts.path === undefined ? {} : { path: opts.path }),
    secrets: opts.webhookSecrets,
    onEvent,
    health: () => clamd.ping(),
    log,
  });
  log({ event: 'scanner.started' });
  return {
    url: receiver.url,
    contacts: () => [...sessions.keys()],
    setWebhookSecrets: (secrets) => receiver.setSecrets(secrets),
    async close() {
      await receiver.close();
      const all = await Promise.allSettled([...sessions.values()]);
      for (const r of all) if (r.status === 'fulfilled') r.value.close('shutdown');
      sessions.clear();
      live.clear();
    },
  };
}
