/**
 * The demo backend's agent queue routes (docs/web.md "Queue"): what an enterprise's backend does
 * for its agents, done here for the demo. It drives the relay's queue (docs/admin-api.md
 * "Queue") with the admin key derived from the API secret, server-side, for the agent the
 * console names (header `x-latchkey-demo-agent`; the demo asks nobody who they are), and
 * follows a release or transfer with the key service's kick or transfer so that the content key
 * rotates away from the agent who gave the contact up.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  ADMIN_PATHS,
  AgentContactsResponse,
  Id,
  QUEUE_PATHS,
  QueueResponse,
  QueueTransferRequest,
  SetAgentRequest,
} from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';

/** The header naming the console's agent. */
export const DEMO_AGENT_HEADER = 'x-latchkey-demo-agent';
/** A request to the relay or key service gives up after this long. */
const CALL_TIMEOUT_MS = 5000;

/** The agent the request names, or null (the default demo agent). */
export function agentOf(req: FastifyRequest): string | null {
  const v = req.headers[DEMO_AGENT_HEADER];
  return typeof v === 'string' && Id.safeParse(v).success ? v : null;
}

const SetAgentBody = SetAgentRequest;
const TransferBody = QueueTransferRequest;

interface Answer {
  status: number;
  json: unknown;
}

export interface DemoQueueOptions {
  apiSecret: Uint8Array;
  /** The relay's WebSocket URL; its admin API is on the same port over HTTP. */
  relayUrl: string;
  keysUrl: string;
}

export class DemoQueue {
  readonly #auth: string;
  readonly #relay: string;
  readonly #keys: string;

  constructor(opts: DemoQueueOptions) {
    this.#auth = adminAuthorization(deriveAdminKey(opts.apiSecret));
    this.#relay = opts.relayUrl.replace(/^ws/, 'http').replace(/\/+$/, '');
    this.#keys = opts.keysUrl.replace(/\/+$/, '');
  }

  async #call(base: string, method: string, path: string, body?: unknown): Promise<Answer> {
    try {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: this.#auth,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      });
      return { status: res.status, json: await res.json() };
    } catch {
      return {
        status: 503,
        json: { error: { code: 'UNAVAILABLE', message: 'relay or key service unreachable' } },
      };
    }
  }

  /** Puts a contact in the relay's queue; false when the relay refused or is down. */
  async enqueue(contactId: string): Promise<boolean> {
    const r = await this.#call(this.#relay, 'POST', QUEUE_PATHS.queue, { contactId });
    return r.status === 200;
  }

  /** The contacts the agent holds now (empty when the relay cannot say). */
  async claimedBy(agentId: string): Promise<Set<string>> {
    const r = await this.#call(this.#relay, 'GET', QUEUE_PATHS.agentContacts(agentId));
    const parsed = AgentContactsResponse.safeParse(r.json);
    return new Set(parsed.success ? parsed.data.contacts.map((e) => e.contactId) : []);
  }

  /** Registers the routes under the demo backend's prefix; `known` says whether a contact is open. */
  register(api: FastifyInstance, known: (contactId: string) => boolean): void {
    const send = (reply: FastifyReply, a: Answer): FastifyReply =>
      reply.code(a.status).send(a.json);
    const bad = (reply: FastifyReply, message: string): FastifyReply =>
      reply.code(400).send({ error: { code: 'BAD_REQUEST', message } });
    const agent = (req: FastifyRequest, reply: FastifyReply): string | null => {
      const id = agentOf(req);
      if (id === null) void bad(reply, `name the agent (${DEMO_AGENT_HEADER})`);
      return id;
    };
    type WithId = { Params: { id: string } };
    const contact = (req: FastifyRequest<WithId>, reply: FastifyReply): string | null => {
      const { id } = req.params;
      if (Id.safeParse(id).success && known(id)) return id;
      void reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'no such open contact' } });
      return null;
    };

    // Waiting contacts, oldest first (the demo's open ones).
    api.get('/queue', async (_req, reply) => {
      const r = await this.#call(this.#relay, 'GET', QUEUE_PATHS.queue);
      const parsed = QueueResponse.safeParse(r.json);
      if (!parsed.success) return send(reply, r);
      return { waiting: parsed.data.waiting.filter((e) => known(e.contactId)) };
    });

    api.get('/agent', async (req, reply) => {
      const id = agent(req, reply);
      if (id === null) return reply;
      return send(reply, await this.#call(this.#relay, 'GET', QUEUE_PATHS.agent(id)));
    });

    api.put('/agent', async (req, reply) => {
      const id = agent(req, reply);
      if (id === null) return reply;
      const body = SetAgentBody.safeParse(req.body ?? {});
      if (!body.success) return bad(reply, 'availability or capacity invalid');
      return send(reply, await this.#call(this.#relay, 'PUT', QUEUE_PATHS.agent(id), body.data));
    });

    api.post<WithId>('/queue/:id/claim', async (req, reply) => {
      const id = agent(req, reply);
      const c = id === null ? null : contact(req, reply);
      if (id === null || c === null) return reply;
      return send(
        reply,
        await this.#call(this.#relay, 'POST', QUEUE_PATHS.claim(c), { agentId: id }),
      );
    });

    // Back to the queue: the relay ends the agent's connections, the key service rotates the key.
    api.post<WithId>('/queue/:id/release', async (req, reply) => {
      const id = agent(req, reply);
      const c = id === null ? null : contact(req, reply);
      if (id === null || c === null) return reply;
      const r = await this.#call(this.#relay, 'POST', QUEUE_PATHS.release(c), { agentId: id });
      if (r.status === 200)
        await this.#call(this.#keys, 'POST', ADMIN_PATHS.kick(c), { participantId: id });
      return send(reply, r);
    });

    api.post<WithId>('/queue/:id/transfer', async (req, reply) => {
      const id = agent(req, reply);
      const c = id === null ? null : contact(req, reply);
      if (id === null || c === null) return reply;
      const body = TransferBody.safeParse(req.body ?? {});
      if (!body.success) return bad(reply, 'toAgentId invalid');
      const mine = await this.claimedBy(id);
      if (!mine.has(c))
        return reply
          .code(403)
          .send({ error: { code: 'FORBIDDEN', message: 'only the holder transfers a contact' } });
      const to = body.data.toAgentId;
      const r = await this.#call(this.#relay, 'POST', QUEUE_PATHS.transfer(c), { toAgentId: to });
      if (r.status === 200)
        await this.#call(this.#keys, 'POST', ADMIN_PATHS.transfer(c), { from: id, to });
      return send(reply, r);
    });
  }
}
