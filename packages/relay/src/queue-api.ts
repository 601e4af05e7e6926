/**
 * The agent queue's admin routes on the relay (docs/admin-api.md "Queue"): the enterprise's
 * backend lists waiting contacts, claims one for an agent (exactly one claim wins), releases it
 * back to the queue, transfers it to another agent, and sets an agent's availability and
 * capacity. Membership follows the queue: a claim invites the agent into the contact (a claim
 * the membership rules refuse is undone), a release removes the agent (kicked: its connections
 * end, it cannot claim this contact again), a transfer moves the contact's agent seat. Called by
 * admin-api.ts after authentication; bodies are @latchkey/protocol `queue.ts`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ClaimRequest,
  EnqueueRequest,
  LatchkeyError,
  QUEUE_LIST_LIMIT,
  QueueTransferRequest,
  ReleaseRequest,
  SetAgentRequest,
  parseRequest as parse,
  type AgentContactsResponse,
  type AgentResponse,
  type QueueEntryResponse,
  type QueueResponse,
} from '@latchkey/protocol';
import type { ContactPolicy, ContactStore } from './contacts.ts';
import { readJson, send } from './http-json.ts';
import type { QueueStore } from './queue-store.ts';

export interface QueueRoutesOptions {
  queue: QueueStore;
  contacts: ContactStore;
  policy: ContactPolicy;
  /** Ends the connections of a removed participant; returns how many. */
  onKick: (contactId: string, participantId: string) => number;
  log: (e: { event: string; [k: string]: string | number | boolean | undefined }) => void;
  now: () => number;
}

const ID = '([A-Za-z0-9_-]{1,64})';
const QUEUE = /^\/admin\/v1\/queue\/?$/;
const ACTION = new RegExp(`^/admin/v1/queue/${ID}/(claim|release|transfer)/?$`);
const AGENT = new RegExp(`^/admin/v1/agents/${ID}(/contacts)?/?$`);

/**
 * Serves `req` when its path is a queue route (returns true; false otherwise). Throws
 * LatchkeyError for the caller to answer.
 */
export async function queueRoute(
  opts: QueueRoutesOptions,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  keyId: string,
): Promise<boolean> {
  const { queue, contacts } = opts;
  const method = req.method ?? 'GET';
  const path = url.pathname;
  if (QUEUE.test(path)) {
    if (method === 'GET') {
      const waiting = [];
      for (const e of await queue.waiting(QUEUE_LIST_LIMIT)) {
        // A contact closed or expired meanwhile leaves the queue (unknown: nobody joined yet).
        const info = await contacts.contact(e.contactId, opts.now());
        if (info && info.state !== 'open') await queue.remove(e.contactId);
        else waiting.push(e);
      }
      send(res, 200, { waiting } satisfies QueueResponse);
      return true;
    }
    if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const { contactId } = parse(EnqueueRequest, await readJson(req));
    const entry = await queue.enqueue(contactId, opts.now());
    send(res, 200, { entry } satisfies QueueEntryResponse);
    return true;
  }
  const agent = AGENT.exec(path);
  if (agent?.[1] !== undefined) {
    const agentId = agent[1];
    if (agent[2] !== undefined) {
      if (method !== 'GET') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      const [state, list] = await Promise.all([queue.agent(agentId), queue.agentContacts(agentId)]);
      send(res, 200, { agent: state, contacts: list } satisfies AgentContactsResponse);
      return true;
    }
    if (method === 'GET') {
      send(res, 200, { agent: await queue.agent(agentId) } satisfies AgentResponse);
      return true;
    }
    if (method !== 'PUT') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const set = parse(SetAgentRequest, await readJson(req));
    const state = await queue.setAgent(agentId, set, opts.now());
    opts.log({ event: 'admin', keyId, action: 'agent', agentId });
    send(res, 200, { agent: state } satisfies AgentResponse);
    return true;
  }
  const m = ACTION.exec(path);
  if (m?.[1] === undefined || m[2] === undefined) return false;
  if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
  const contactId = m[1];
  const body = await readJson(req);
  const at = opts.now();
  let answer: QueueEntryResponse;
  switch (m[2]) {
    case 'claim': {
      const { agentId } = parse(ClaimRequest, body);
      const entry = await queue.claim(contactId, agentId, at);
      try {
        await contacts.invite(contactId, agentId, 'agent', at, opts.policy);
      } catch (err) {
        // The membership rules refuse this agent (kicked or left before, contact full or
        // expired): the claim is undone and the contact waits again.
        await queue.release(contactId, agentId);
        throw err;
      }
      answer = { entry };
      opts.log({ event: 'admin', keyId, action: 'claim', contactId, agentId });
      break;
    }
    case 'release': {
      const { agentId } = parse(ReleaseRequest, body);
      const entry = await queue.release(contactId, agentId);
      await contacts.kick(contactId, agentId, at);
      const closed = opts.onKick(contactId, agentId);
      answer = { entry };
      opts.log({ event: 'admin', keyId, action: 'release', contactId, agentId, closed });
      break;
    }
    default: {
      const { toAgentId } = parse(QueueTransferRequest, body);
      const before = await queue.entry(contactId);
      const { entry, from } = await queue.transfer(contactId, toAgentId, at);
      try {
        await contacts.transfer(contactId, from, toAgentId, at);
      } catch (err) {
        // Refused by the membership rules (`to` kicked or left before...): `from` keeps it.
        await queue.setHolder(contactId, from, before?.claimedAt ?? at);
        throw err;
      }
      const closed = opts.onKick(contactId, from);
      answer = { entry };
      opts.log({ event: 'admin', keyId, action: 'queue-transfer', contactId, from, closed });
      break;
    }
  }
  send(res, 200, answer);
  return true;
}
