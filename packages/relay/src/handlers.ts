/**
 * What each client frame does (frames in @latchkey/protocol `frames.ts`). The first frame must
 * be `auth`: a valid token of an admitted member gets `ready`, then the frames pipelined behind
 * it run in order. `join` enters the contact's stream (contact-stream.ts). `send` is acked only
 * once its group commit is durable, then published to the fan-out for the other connections.
 * `history` pages the log within a byte budget; `ping` gets `pong`; `signal` (typing, seen) is
 * forwarded to the other members through the fan-out and never stored (signals.ts).
 *
 * Every text frame is parsed with the protocol's zod schemas: a malformed or unknown one is a
 * protocol error (BAD_FRAME), another `v` is UNSUPPORTED_VERSION. The relay validates schemas
 * and metadata only: it holds no key and opens nothing.
 */
import {
  AUDIENCE_RELAY,
  ClientFrame,
  ERROR_CODES,
  LIMITS,
  LatchkeyError,
  PROTOCOL_VERSION,
  ENVELOPE_ROLES,
  WS_CLOSE_POLICY,
  parseJson,
  toLatchkeyError,
  type HistoryRequestFrame,
  type JoinFrame,
  type SendFrame,
} from '@latchkey/protocol';
import type { WebhookService } from '@latchkey/webhooks';
import type { Connection } from './connection.ts';
import type { ContactStreams } from './contact-stream.ts';
import type { Fanout } from './fanout.ts';
import type { GroupCommit } from './group-commit.ts';
import type { RelayMetrics } from './metrics.ts';
import type { RelayConfig } from './options.ts';
import type { ParticipantLimits } from './participant-limits.ts';
import { createSignalHandler } from './signals.ts';
import { emitAdmission, emitMessageStored } from './webhook-events.ts';

export interface FrameHandlerDeps {
  config: Pick<
    RelayConfig,
    'verifier' | 'contacts' | 'policy' | 'store' | 'maxFrameBytes' | 'maxHistoryBytes' | 'log'
  >;
  webhooks: WebhookService | undefined;
  participants: ParticipantLimits;
  streams: ContactStreams<Connection>;
  committer: Pick<GroupCommit, 'submit'>;
  fanout: Pick<Fanout, 'publish'>;
  relayId: string;
  metrics: Pick<RelayMetrics, 'fanoutPublishFailures'>;
  /** True once the relay is shutting down: sends are refused. */
  closing: () => boolean;
}

/**
 * Parses one client frame.
 * @throws LatchkeyError BAD_FRAME, or UNSUPPORTED_VERSION for a well-formed frame of another `v`.
 */
export function parseClientFrame(text: string): ClientFrame {
  try {
    return parseJson(ClientFrame, text);
  } catch (err) {
    let v: unknown;
    try {
      v = (JSON.parse(text) as { v?: unknown } | null)?.v;
    } catch {
      // not JSON at all: BAD_FRAME stands
    }
    if (typeof v === 'number' && v !== PROTOCOL_VERSION) {
      throw new LatchkeyError(
        'UNSUPPORTED_VERSION',
        `protocol version ${PROTOCOL_VERSION} required`,
      );
    }
    throw err;
  }
}

/** Returns the handler of a connection's text frames (Connection's `onText`). */
export function createFrameHandler(deps: FrameHandlerDeps): (c: Connection, text: string) => void {
  const { config, webhooks, participants, streams, committer, fanout, relayId, metrics } = deps;
  const { verifier, contacts, policy, store, maxFrameBytes, maxHistoryBytes, log } = config;
  const onSignal = createSignalHandler({
    fanout,
    relayId,
    joined: (c) => streams.has(c),
    closing: deps.closing,
    publishFailed: (contactId) => {
      metrics.fanoutPublishFailures++;
      log({ event: 'fanout-publish-failed', contactId });
    },
  });

  function onText(c: Connection, text: string): void {
    let frame: ClientFrame;
    try {
      frame = parseClientFrame(text);
    } catch (err) {
      const e = toLatchkeyError(err);
      if (e.code === 'UNSUPPORTED_VERSION') c.error(e.code, e.message);
      else if (c.phase === 'auth') c.error('AUTH_REQUIRED');
      else c.protocolError('BAD_FRAME', e.code === 'BAD_FRAME' ? e.message : 'invalid frame');
      return;
    }
    if (c.phase === 'auth') {
      if (frame.type === 'auth') startAuth(c, frame.token);
      else c.error('AUTH_REQUIRED');
      return;
    }
    switch (frame.type) {
      case 'auth':
        c.protocolError('BAD_REQUEST', 'already authenticated');
        return;
      case 'join':
        onJoin(c, frame);
        return;
      case 'send':
        onSend(c, frame);
        return;
      case 'history':
        onHistory(c, frame);
        return;
      case 'signal':
        onSignal(c, frame, text.length);
        return;
      case 'ping':
        c.send({
          v: PROTOCOL_VERSION,
          type: 'pong',
          ...(frame.id === undefined ? {} : { id: frame.id }),
        });
        return;
    }
  }

  function startAuth(c: Connection, token: string): void {
    c.phase = 'authenticating';
    void (async () => {
      const principal = await verifier.verify(token, { audience: AUDIENCE_RELAY });
      if (participants.coolingDown(principal)) {
        c.error('RATE_LIMITED', 'cooling down after rate limit abuse');
        c.close(WS_CLOSE_POLICY, 'rate limit abuse');
        return;
      }
      // Membership: kicked or departed participants, expired or full contacts are refused.
      const admittedAt = Date.now();
      emitAdmission(
        webhooks,
        await contacts.admit(principal, admittedAt, policy),
        principal.participantId,
        admittedAt,
      );
      const head = await store.head(principal.contactId);
      // closed or timed out meanwhile
      if (c.phase !== 'authenticating' || !c.open) return;
      c.authenticated(principal, participants.acquireBytes(principal));
      log({
        event: 'auth',
        conn: c.id,
        contactId: principal.contactId,
        participantId: principal.participantId,
        role: principal.role,
      });
      c.send({
        v: PROTOCOL_VERSION,
        type: 'ready',
        contactId: principal.contactId,
        participantId: principal.participantId,
        role: principal.role,
        head,
        maxFrameBytes,
      });
      for (const text of c.takeEarly()) {
        if (!c.ready) break;
        onText(c, text);
      }
    })().catch((err: unknown) => {
      if (c.phase === 'closed') return;
      const e = toLatchkeyError(err);
      if (e.code === 'AUTH_EXPIRED' || e.code === 'AUTH_INVALID') {
        c.error(e.code);
      } else {
        c.failure(e);
        c.close(ERROR_CODES[e.code].ws, e.code);
      }
    });
  }

  function onJoin(c: Connection, frame: JoinFrame): void {
    const p = c.principal;
    if (!p) return;
    if (streams.has(c)) {
      c.protocolError('BAD_REQUEST', 'already joined');
      return;
    }
    streams.join(c, p.contactId, frame.since).catch((err: unknown) => c.failure(err));
  }

  function onSend(c: Connection, frame: SendFrame): void {
    const p = c.principal;
    if (!p) return;
    const env = frame.envelope;
    const ref = { msgId: env.msgId };
    if (!ENVELOPE_ROLES.has(p.role)) {
      c.protocolError('FORBIDDEN', 'this role may not send', ref);
      return;
    }
    if (env.contactId !== p.contactId || env.senderId !== p.participantId) {
      c.protocolError('FORBIDDEN', 'envelope contact or sender does not match the token', ref);
      return;
    }
    if (deps.closing()) {
      c.error('UNAVAILABLE', 'relay is shutting down', ref);
      return;
    }
    committer.submit(env).then(
      (r) => {
        if (!r.ok) {
          c.error(r.code, undefined, ref);
          return;
        }
        c.send({
          v: PROTOCOL_VERSION,
          type: 'ack',
          msgId: env.msgId,
          seq: r.seq,
          duplicate: r.duplicate,
        });
        if (r.duplicate) return;
        emitMessageStored(webhooks, r.envelope, Date.now());
        streams.sent(c, r.seq);
        fanout
          .publish({
            type: 'envelope',
            envelope: r.envelope,
            origin: relayId,
            conn: c.id,
            at: Date.now(),
            ...(r.json === undefined ? {} : { json: r.json }),
          })
          .catch(() => {
            // Receivers elsewhere see the gap at the next envelope and read it from the store.
            metrics.fanoutPublishFailures++;
            log({ event: 'fanout-publish-failed', contactId: env.contactId });
          });
      },
      (err: unknown) => c.failure(err, ref),
    );
  }

  function onHistory(c: Connection, frame: HistoryRequestFrame): void {
    const p = c.principal;
    if (!p) return;
    const ref = { id: frame.id };
    store.history(p.contactId, frame.since, frame.limit ?? LIMITS.maxHistoryPage).then(
      (page) => {
        let { envelopes, more } = page;
        let bytes = 0;
        const cut = envelopes.findIndex(
          (e, i) => (bytes += JSON.stringify(e).length) > maxHistoryBytes && i > 0,
        );
        if (cut > 0) {
          envelopes = envelopes.slice(0, cut);
          more = true;
        }
        c.send({
          v: PROTOCOL_VERSION,
          type: 'history',
          id: frame.id,
          envelopes,
          head: page.head,
          more,
        });
      },
      (err: unknown) => c.failure(err, ref),
    );
  }

  return onText;
}
