/**
 * The relay's admin API (docs/admin-api.md) on plain node:http: list contacts with their state
 * and participants, close, set expiry, kick, invite, transfer. Authenticated by the enterprise's
 * API key (`Authorization: Bearer <key id>:<secret>`, compared in constant time by
 * @latchkey/tokens `createAdminAuthenticator`) before any body is read. Bodies and answers are
 * the zod schemas of @latchkey/protocol `admin.ts`; errors are `{ error: { code, message } }`.
 *
 * Moderation reaches the key service first (the admin client does that), then this API, which
 * updates the contact store and ends the connections of whoever was removed. Every action is
 * idempotent, so re-running one the relay missed completes it: a repeated kick or transfer ends
 * connections and sends `rekey` again, but emits no second webhook event.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ADMIN_PREFIX,
  CloseContactRequest,
  ERROR_CODES,
  InviteRequest,
  KickRequest,
  LatchkeyError,
  ListContactsQuery,
  SetExpiryRequest,
  ShredRequest,
  TransferRequest,
  parseRequest as parse,
  toLatchkeyError,
  type ContactInfo,
  type ContactResponse,
  type ErrorResponse,
  type ListContactsResponse,
  type ShredResponse,
} from '@latchkey/protocol';
import { createAdminAuthenticator, type AdminKey } from '@latchkey/tokens';
import type { ContactPolicy, ContactStore } from './contacts.ts';
import type { WebhookService } from '@latchkey/webhooks';
import { emitAdmission } from './webhook-events.ts';
import { readJson, send } from './http-json.ts';
import { webhookRoute } from './webhooks-api.ts';
import { queueRoute } from './queue-api.ts';
import { SqliteQueueStore, type QueueStore } from './queue-store.ts';
import type { Moderation } from './moderation.ts';
import type { RelayConfig, RelayOptions } from './options.ts';

export interface AdminApiOptions {
  contacts: ContactStore;
  keys: readonly AdminKey[];
  /** IPs/CIDR ranges that may use the admin API (default: loopback only). */
  ipAllowlist?: readonly string[];
  policy: ContactPolicy;
  log: (e: { event: string; [k: string]: string | number | boolean | undefined }) => void;
  /** Ends the connections of a kicked or departed participant; returns how many. */
  onKick: (contactId: string, participantId: string) => number;
  /** Called after an expiry change, so that a contact now past expiry is swept at once. */
  onExpiryChanged: () => Promise<void>;
  /** Crypto-shredding: expires the contact, ends its connections, deletes its ciphertext; returns how many messages. */
  onShred?: (contactId: string) => Promise<number>;
  /** Signed webhooks: lifecycle events, and the /admin/v1/webhooks routes (webhooks-api.ts). */
  webhooks?: WebhookService;
  now?: () => number;
  /** The agent queue (queue-api.ts); default: one in memory, lost on restart. */
  queue?: QueueStore;
}

export interface AdminApi {
  /** Serves the request when its path is under /admin/v1 (returns true), else returns false. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

const ROUTE =
  /^\/admin\/v1\/contacts(?:\/([A-Za-z0-9_-]{1,64})(?:\/(close|expiry|kick|invite|transfer))?)?\/?$/;

const SHRED_ROUTE = /^\/admin\/v1\/contacts\/([A-Za-z0-9_-]{1,64})\/shred\/?$/;

function sendError(res: ServerResponse, err: LatchkeyError): void {
  const status = ERROR_CODES[err.code].http;
  const body: ErrorResponse = { error: { code: err.code, message: err.message.slice(0, 200) } };
  send(
    res,
    status,
    body,
    status === 401 ? { 'www-authenticate': 'Bearer realm="latchkey-admin"' } : {},
  );
}

/** When the participant left or was kicked (null: active or unknown). */
const departedAt = (info: ContactInfo, participantId: string): number | null =>
  info.participants.find((p) => p.participantId === participantId)?.leftAt ?? null;

export function createAdminApi(opts: AdminApiOptions): AdminApi {
  const auth = createAdminAuthenticator(
    opts.keys,
    opts.ipAllowlist === undefined ? {} : { ipAllowlist: opts.ipAllowlist },
  );
  const now = opts.now ?? Date.now;
  const { contacts, policy } = opts;
  const queue = { ...opts, queue: opts.queue ?? new SqliteQueueStore({ path: ':memory:' }), now };

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const keyId = auth.check(req.headers.authorization, req.socket.remoteAddress);
    if (await shredRoute(req, res, url, keyId)) return;
    if (await queueRoute(queue, req, res, url, keyId)) return;
    if (opts.webhooks && (await webhookRoute(opts.webhooks, req, res, url, opts.log))) return;
    const m = ROUTE.exec(url.pathname);
    if (!m) throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const [, contactId, action] = m;
    const method = req.method ?? 'GET';
    if (contactId === undefined) {
      if (method !== 'GET') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      const q = parse(ListContactsQuery, Object.fromEntries(url.searchParams));
      const limit = q.limit ?? 100;
      const list = await contacts.listContacts(
        {
          limit: limit + 1,
          ...(q.state === undefined ? {} : { state: q.state }),
          ...(q.after === undefined ? {} : { after: q.after }),
        },
        now(),
      );
      const page = list.slice(0, limit);
      const last = page[page.length - 1];
      const body: ListContactsResponse = {
        contacts: page,
        ...(list.length > limit && last ? { next: last.contactId } : {}),
      };
      send(res, 200, body);
      return;
    }
    if (action === undefined) {
      if (method !== 'GET') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
      const info = await contacts.contact(contactId, now());
      if (!info) throw new LatchkeyError('NOT_FOUND', 'no such contact');
      send(res, 200, { contact: info } satisfies ContactResponse);
      return;
    }
    if (method !== 'POST') throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    const body = await readJson(req);
    let info: ContactInfo | undefined;
    switch (action) {
      case 'close': {
        parse(CloseContactRequest, body);
        const at = now();
        info = await contacts.closeContact(contactId, at);
        if (info.closedAt === at) opts.webhooks?.emit('contact.closed', { contactId, time: at });
        break;
      }
      case 'expiry': {
        const { expiresAt } = parse(SetExpiryRequest, body);
        info = await contacts.setExpiry(contactId, expiresAt, now());
        if (expiresAt <= now()) {
          await opts.onExpiryChanged();
          info = (await contacts.contact(contactId, now())) ?? info;
        }
        break;
      }
      case 'kick': {
        const { participantId } = parse(KickRequest, body);
        const at = now();
        info = await contacts.kick(contactId, participantId, at);
        const closed = opts.onKick(contactId, participantId);
        opts.log({ event: 'admin-kick', keyId, contactId, participantId, closed });
        // A repeated kick (completing one the relay missed, or a re-run) is no new event.
        if (departedAt(info, participantId) === at)
          opts.webhooks?.emit('participant.kicked', { contactId, participantId, time: at });
        break;
      }
      case 'invite': {
        const { participantId, role } = parse(InviteRequest, body);
        const at = now();
        info = await contacts.invite(contactId, participantId, role, at, policy);
        emitAdmission(opts.webhooks, info, participantId, at);
        break;
      }
      case 'transfer': {
        const { from, to } = parse(TransferRequest, body);
        const at = now();
        info = await contacts.transfer(contactId, from, to, at);
        const closed = opts.onKick(contactId, from);
        opts.log({ event: 'admin-transfer', keyId, contactId, from, to, closed });
        if (departedAt(info, from) === at)
          opts.webhooks?.emit('participant.left', { contactId, participantId: from, time: at });
        emitAdmission(opts.webhooks, info, to, at);
        break;
      }
    }
    if (!info) throw new LatchkeyError('NOT_FOUND', 'no such endpoint');
    opts.log({ event: 'admin', keyId, action, contactId });
    send(res, 200, { contact: info } satisfies ContactResponse);
  }

  /** POST /admin/v1/contacts/{id}/shred (after authentication); false when not this route. */
  async function shredRoute(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    keyId: string,
  ): Promise<boolean> {
    const m = SHRED_ROUTE.exec(url.pathname);
    if (!m?.[1] || req.method !== 'POST' || !opts.onShred) return false;
    const contactId = m[1];
    parse(ShredRequest, await readJson(req));
    const messagesDeleted = await opts.onShred(contactId);
    opts.log({ event: 'admin', keyId, action: 'shred', contactId });
    send(res, 200, { contactId, messagesDeleted } satisfies ShredResponse);
    return true;
  }

  return {
    handle(req, res) {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://relay.invalid');
      } catch {
        return false;
      }
      if (url.pathname !== ADMIN_PREFIX && !url.pathname.startsWith(`${ADMIN_PREFIX}/`))
        return false;
      route(req, res, url).catch((err: unknown) => {
        const e = toLatchkeyError(err);
        if (ERROR_CODES[e.code].http >= 500)
          opts.log({ event: 'admin-failed', code: e.code, detail: e.detail });
        if (!res.headersSent) sendError(res, e);
        else res.destroy();
        // An unread body would keep the connection busy; this request is done.
        req.resume();
      });
      return true;
    },
  };
}

/**
 * The relay's admin API over its configuration (relay.ts), or none when no admin key is set:
 * kicks and expiry changes go through moderation, shreds when the store has a shredder.
 */
export function relayAdminApi(
  config: RelayConfig,
  opts: RelayOptions,
  moderation: Pick<Moderation, 'kicked' | 'sweepExpired' | 'shred'>,
): AdminApi | undefined {
  if (config.adminKeys.length === 0) return undefined;
  return createAdminApi({
    contacts: config.contacts,
    keys: config.adminKeys,
    ...(opts.adminIpAllowlist === undefined ? {} : { ipAllowlist: opts.adminIpAllowlist }),
    policy: config.policy,
    log: config.log,
    onKick: (contactId, participantId) => moderation.kicked(contactId, participantId),
    onExpiryChanged: () => moderation.sweepExpired(),
    ...(opts.webhooks ? { webhooks: opts.webhooks } : {}),
    ...(config.shredder ? { onShred: (id: string) => moderation.shred(id) } : {}),
    ...(opts.queue ? { queue: opts.queue } : {}),
  });
}
