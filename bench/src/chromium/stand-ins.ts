/**
 * In-page stand-ins for the relay and the key service (browser code, bundled into the benchmark
 * page): a WebSocket that speaks the relay protocol (docs/protocol.md "Relay (WebSocket)") from
 * the stored envelopes it was given, each frame in a task of its own as a socket's message events
 * are, and a `fetch` that answers the key service's `contact-key` and `epoch-statement` (with a
 * certificate for the reader's session key, signed with the bench service key). Nothing is
 * checked here: the real client does the checking.
 */
import type { FetchLike, WebSocketConstructor, WebSocketLike } from '@latchkey/client';
import { fromBase64Url, toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { signWithContext } from '@latchkey/crypto/sign';
import {
  CERT_ALG,
  KEYS_PATHS,
  PROTOCOL_VERSION,
  type CertificateBody,
  type ContactKeyResponse,
} from '@latchkey/protocol';
import type { HistoryPayload } from './history-fixture.ts';

const CERT_CONTEXT = 'latchkey.v1.cert';
const OPEN = 1;
const CLOSED = 3;

const queue: (() => void)[] = [];
let channel: MessageChannel | null = null;

/** Runs `fn` in a task of its own (unclamped, unlike nested setTimeout). */
export function task(fn: () => void): void {
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => queue.shift()?.();
  }
  queue.push(fn);
  channel.port2.postMessage(null);
}

/** The relay's side of one contact: `onJoin` fires when the client asks for the replay. */
export function relaySocket(p: HistoryPayload, onJoin: () => void): WebSocketConstructor {
  const head = p.envelopes.length;
  const v = PROTOCOL_VERSION;
  const ready = JSON.stringify({
    v,
    type: 'ready',
    contactId: p.contactId,
    participantId: p.reader.participantId,
    role: p.reader.role,
    head,
    maxFrameBytes: 65_536,
  });
  // Serialised before anything is timed: the relay has them ready to write.
  const deliver = p.envelopes.map((e) => `{"v":${v},"type":"deliver","envelope":${e}}`);
  const joined = JSON.stringify({ v, type: 'joined', head });
  const history = (id: string, since: number, limit: number): string => {
    const page = p.envelopes.slice(since, since + limit);
    const more = since + page.length < head;
    return `{"v":${v},"type":"history","id":${JSON.stringify(id)},"envelopes":[${page.join(',')}],"head":${head},"more":${more}}`;
  };
  return class RelaySocket implements WebSocketLike {
    readyState = 0;
    onopen: ((ev: unknown) => void) | null = null;
    onmessage: ((ev: { data: unknown }) => void) | null = null;
    onclose: ((ev: { code: number; reason: string }) => void) | null = null;
    onerror: ((ev: unknown) => void) | null = null;

    constructor(_url: string) {
      task(() => {
        this.readyState = OPEN;
        this.onopen?.({});
      });
    }

    send(data: string): void {
      const f = JSON.parse(data) as { type: string; id?: string; since?: number; limit?: number };
      if (f.type === 'auth') this.#push(ready);
      else if (f.type === 'join') {
        onJoin();
        for (const d of deliver) this.#push(d);
        this.#push(joined);
      } else if (f.type === 'history') {
        this.#push(history(f.id ?? '', f.since ?? 0, f.limit ?? 500));
      }
    }

    close(code = 1000): void {
      if (this.readyState === CLOSED) return;
      this.readyState = CLOSED;
      task(() => this.onclose?.({ code, reason: '' }));
    }

    #push(data: string): void {
      task(() => {
        if (this.readyState === OPEN) this.onmessage?.({ data });
      });
    }
  };
}

/** The key service: the content key (plain delivery), the statement, the reader's certificate. */
export function keyService(p: HistoryPayload): FetchLike {
  const secret = fromBase64Url(p.serviceSecretKey);
  const certify = (publicKey: string): ContactKeyResponse['certificate'] => {
    const now = Date.now();
    const body: CertificateBody = {
      v: 1,
      alg: CERT_ALG,
      contactId: p.contactId,
      participantId: p.reader.participantId,
      role: p.reader.role,
      publicKey,
      issuedAt: now,
      notAfter: now + 3_600_000,
      epoch: 0,
    };
    const bytes = utf8Encode(JSON.stringify(body));
    return {
      body: toBase64Url(bytes),
      sig: toBase64Url(signWithContext(secret, CERT_CONTEXT, bytes)),
    };
  };
  return (url, init) => {
    const path = new URL(url).pathname;
    if (path === KEYS_PATHS.contactKey) {
      const req = JSON.parse(String(init?.body ?? '{}')) as { signingKey?: string };
      const certificate = req.signingKey ? certify(req.signingKey) : undefined;
      const res: ContactKeyResponse = {
        contactId: p.contactId,
        epoch: 0,
        currentEpoch: 0,
        key: p.contentKey,
        statement: p.statement,
        ...(certificate ? { certificate } : {}),
      };
      return Promise.resolve(Response.json(res));
    }
    if (path === KEYS_PATHS.epochStatement)
      return Promise.resolve(Response.json({ statement: p.statement }));
    const error = { code: 'NOT_FOUND', message: 'not here' };
    return Promise.resolve(Response.json({ error }, { status: 404 }));
  };
}
