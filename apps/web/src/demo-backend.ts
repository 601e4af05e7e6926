/**
 * The demo backend: routes that play the enterprise's own backend so that the demo works out of
 * the box. It creates a new contact id per conversation and mints visitor and agent tokens with
 * the API secret, server-side; the secret never appears in a response.
 *
 * Development only. It asks nobody who they are, so every request must carry the per-start demo
 * key (header `x-latchkey-demo-key`, compared in constant time): 32 random bytes made when the
 * server starts and handed out only in the fragment of the `visitor:`/`agent:` URLs that
 * `latchkey start` prints, never in a response. A loopback peer and a loopback Host prove
 * nothing behind a reverse proxy on the same host (every outside request then looks local), so
 * they are kept only as extra checks: loopback clients only, a loopback Host (DNS rebinding), and
 * a browser's Origin must be this server (no cross-site use). A real deployment replaces it with
 * its own authenticated endpoints (docs/web.md "Replacing the demo backend").
 *
 * The agent queue (docs/web.md "Queue"): every new contact is put in the relay's queue; a console
 * opened with `?agent=<id>` names its agent (header `x-latchkey-demo-agent`, trusted as the
 * demo trusts everything) and gets the queue routes (demo-queue.ts), which drive the relay's
 * admin API with the admin key derived from the API secret, so the browser never holds it. Such
 * an agent sees and gets tokens for its claimed contacts only; the default demo agent
 * (`agent-demo`, no header) keeps seeing every open contact.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { constantTimeEqual } from '@latchkey/crypto/compare';
import type { Role } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { DemoQueue, agentOf } from './demo-queue.ts';

export interface DemoBackendOptions {
  apiSecret: Uint8Array;
  relayUrl: string;
  keysUrl: string;
  serviceKey: string;
  /** The deployment scans attachments (sessions say `scanning: true`); default false. */
  scanning?: boolean;
  /** Token lifetime in seconds (default 1 h). */
  tokenTtlSeconds?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface DemoContact {
  contactId: string;
  createdAt: number;
  visitorId: string;
  closed: boolean;
}

export const DEMO_AGENT_ID = 'agent-demo';
/** The header that carries the demo key. */
export const DEMO_KEY_HEADER = 'x-latchkey-demo-key';
/** The fragment parameter of the printed URLs that carries the demo key. */
export const DEMO_KEY_PARAM = 'demo-key';
const ID = /^[A-Za-z0-9_-]{1,64}$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString('base64url')}`;
}

function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
}

function hostName(host: string): string {
  return host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : (host.split(':')[0] ?? '');
}

/** The in-memory contact register of the demo backend plus its routes. */
export class DemoBackend {
  readonly contacts = new Map<string, DemoContact>();
  /** The per-start demo key (base64url of 32 random bytes); only the printed URLs carry it. */
  readonly accessKey: string;
  readonly #keyBytes: Uint8Array;
  #opts: DemoBackendOptions;
  #now: () => number;
  /** The relay's queue, driven with the admin key. */
  readonly queue: DemoQueue;

  constructor(opts: DemoBackendOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.accessKey = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
    this.#keyBytes = utf8Encode(this.accessKey);
    this.queue = new DemoQueue({
      apiSecret: opts.apiSecret,
      relayUrl: opts.relayUrl,
      keysUrl: opts.keysUrl,
    });
  }

  /** `url` with the demo key in its fragment, as the browser pages read it. */
  withKey(url: string): string {
    return `${url}#${DEMO_KEY_PARAM}=${this.accessKey}`;
  }

  #keyMatches(header: string | string[] | undefined): boolean {
    if (typeof header !== 'string') return false;
    let given: Uint8Array;
    try {
      given = utf8Encode(header);
    } catch {
      return false;
    }
    return constantTimeEqual(given, this.#keyBytes);
  }

  /** A new contact with a fresh id (ids are never reused). */
  createContact(): DemoContact {
    const c: DemoContact = {
      contactId: newId('c'),
      createdAt: this.#now(),
      visitorId: newId('v'),
      closed: false,
    };
    this.contacts.set(c.contactId, c);
    this.#queued.set(c.contactId, this.queue.enqueue(c.contactId));
    return c;
  }

  /** Enqueueing of each contact (settled once the relay answered; never rejects). */
  readonly #queued = new Map<string, Promise<boolean>>();

  /** Waits until the contact is in the relay's queue (false: the relay refused or is down). */
  queued(contactId: string): Promise<boolean> {
    return this.#queued.get(contactId) ?? Promise.resolve(false);
  }

  openContact(id: string | undefined): DemoContact | undefined {
    if (id === undefined || !ID.test(id)) return undefined;
    const c = this.contacts.get(id);
    return c && !c.closed ? c : undefined;
  }

  async session(
    c: DemoContact,
    participantId: string,
    role: Role,
  ): Promise<Record<string, unknown>> {
    const agentId = role === 'visitor' ? DEMO_AGENT_ID : participantId;
    const ttlSeconds = this.#opts.tokenTtlSeconds ?? 3600;
    const token = await mintToken(this.#opts.apiSecret, {
      contactId: c.contactId,
      participantId,
      role,
      ttlSeconds,
    });
    return {
      contactId: c.contactId,
      participantId,
      role,
      token,
      expiresAt: this.#now() + ttlSeconds * 1000,
      relayUrl: this.#opts.relayUrl,
      keysUrl: this.#opts.keysUrl,
      serviceKey: this.#opts.serviceKey,
      scanning: this.#opts.scanning === true,
      participants: this.participants(c, agentId),
    };
  }

  participants(c: DemoContact, agentId: string = DEMO_AGENT_ID): { id: string; role: Role }[] {
    return [
      { id: c.visitorId, role: 'visitor' },
      { id: agentId, role: 'agent' },
    ];
  }

  /** Registers the routes under `/api/demo`. */
  register(app: FastifyInstance): void {
    const guard = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const host = req.headers.host ?? '';
      const origin = req.headers.origin;
      let refused: string | null = null;
      if (!this.#keyMatches(req.headers[DEMO_KEY_HEADER]))
        refused =
          'demo key missing or wrong: open the visitor: or agent: URL that latchkey start printed';
      else if (!isLoopbackAddress(req.socket.remoteAddress))
        refused = 'the demo backend answers loopback clients only';
      else if (!LOOPBACK_HOSTS.has(hostName(host))) refused = 'unexpected Host';
      else if (origin !== undefined && origin !== `http://${host}`)
        refused = 'cross-origin request';
      if (refused) {
        await reply.code(403).send({ error: { code: 'FORBIDDEN', message: refused } });
      }
    };

    app.register(
      async (api) => {
        api.addHook('onRequest', guard);
        api.addHook('onSend', async (_req, reply) => {
          reply.header('cache-control', 'no-store');
        });

        // The visitor's session: a new contact unless a known open one is asked for.
        api.post('/visitor-session', async (req) => {
          const body = (req.body ?? {}) as { contactId?: unknown };
          const wanted =
            typeof body.contactId === 'string' ? this.openContact(body.contactId) : undefined;
          const c = wanted ?? this.createContact();
          await this.queued(c.contactId);
          return this.session(c, c.visitorId, 'visitor');
        });

        // Open contacts, newest first (a named agent's: the ones it claimed).
        api.get('/contacts', async (req) => {
          const agentId = agentOf(req);
          const mine = agentId === null ? null : await this.queue.claimedBy(agentId);
          return {
            contacts: [...this.contacts.values()]
              .filter((c) => !c.closed && (mine === null || mine.has(c.contactId)))
              .sort((a, b) => b.createdAt - a.createdAt)
              .map((c) => ({
                contactId: c.contactId,
                createdAt: c.createdAt,
                participants: this.participants(c, agentId ?? DEMO_AGENT_ID),
              })),
          };
        });

        api.post('/agent-session', async (req, reply) => {
          const body = (req.body ?? {}) as { contactId?: unknown };
          const c =
            typeof body.contactId === 'string' ? this.openContact(body.contactId) : undefined;
          if (!c)
            return reply
              .code(404)
              .send({ error: { code: 'NOT_FOUND', message: 'no such open contact' } });
          const agentId = agentOf(req);
          if (agentId !== null && !(await this.queue.claimedBy(agentId)).has(c.contactId))
            return reply
              .code(403)
              .send({ error: { code: 'FORBIDDEN', message: 'claim the contact first' } });
          return this.session(c, agentId ?? DEMO_AGENT_ID, 'agent');
        });

        // Placeholder for closing a contact: it leaves the demo's list. Revoking access at the
        // relay and key service (and crypto-shredding) is a later issue's.
        api.post<{ Params: { id: string } }>('/contacts/:id/close', async (req, reply) => {
          const c = this.openContact(req.params.id);
          if (!c)
            return reply
              .code(404)
              .send({ error: { code: 'NOT_FOUND', message: 'no such open contact' } });
          c.closed = true;
          return { contactId: c.contactId, closed: true };
        });
        this.queue.register(api, (id) => this.openContact(id) !== undefined);
      },
      { prefix: '/api/demo' },
    );
  }
}
