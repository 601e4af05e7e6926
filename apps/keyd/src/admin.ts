/**
 * The key service's admin API (docs/admin-api.md): the same routes and bodies as the relay's,
 * over the key service's own membership table (`AccessTable`: SQLite or PostgreSQL). Moderation reaches this
 * service first, so a kicked or departed participant is refused keys (FORBIDDEN) before the
 * relay even hears of it; kick and transfer also rotate the contact's content key, so whatever
 * is sent afterwards is sealed under an epoch the departed never received.
 *
 * Never half-applied: the rotation a kick or transfer owes is recorded in the same transaction
 * as the membership change. When the key manager cannot rotate now, the answer says
 * `rotationPending: true` (the removal stands, keys are refused) and the key service's sweep
 * completes the rotation once the key manager is back; a repeated kick or transfer retries at
 * once, or, when done, answers the epoch it rotated to without rotating again.
 *
 * Authenticated by the API key (`Authorization: Bearer <key id>:<secret>`, constant-time
 * comparison in @latchkey/tokens) before any body is read.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AccessTable, KeyManager } from '@latchkey/keys';
import {
  ADMIN_PATHS,
  CloseContactRequest,
  InviteRequest,
  KickRequest,
  LatchkeyError,
  ListContactsQuery,
  SetExpiryRequest,
  ShredRequest,
  TransferRequest,
  parseRequest,
  type ContactInfo,
  type ContactResponse,
  type ListContactsResponse,
  type ShredResponse,
} from '@latchkey/protocol';
import { createAdminAuthenticator, type AdminKey } from '@latchkey/tokens';
import { settleOwed, type KeyPolicy, type Settled } from './key-policy.ts';

export interface AdminRoutesOptions {
  access: AccessTable;
  keyManager: KeyManager;
  /** Rotations (dated, one at a time per contact) and shredding go through it when given. */
  policy?: KeyPolicy;
  keys: readonly AdminKey[];
  /** IPs/CIDR ranges allowed to reach the admin API (default: loopback only). */
  ipAllowlist?: readonly string[];
  onError: (reply: FastifyReply, err: LatchkeyError) => FastifyReply;
}

const ID = ':contactId';

function contactId(req: FastifyRequest): string {
  const id = (req.params as { contactId?: unknown }).contactId;
  return parseRequest(KickRequest.shape.participantId, id);
}

export function registerAdminRoutes(app: FastifyInstance, opts: AdminRoutesOptions): void {
  const auth = createAdminAuthenticator(
    opts.keys,
    opts.ipAllowlist === undefined ? {} : { ipAllowlist: opts.ipAllowlist },
  );
  const { access, keyManager } = opts;

  /** Rotates the contact's key so the departed miss what follows; a contact without keys yet has nothing to rotate. */
  async function rotate(id: string): Promise<number | undefined> {
    try {
      return await keyManager.rotate(id);
    } catch (err) {
      if (LatchkeyError.is(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /** Performs (or reports) the rotation the action owes; pending when the key manager fails. */
  const settle = (id: string): Promise<Settled> =>
    opts.policy ? opts.policy.settle(id) : settleOwed(access, id, rotate);

  void app.register(
    async (admin) => {
      // Authenticate before the body is read.
      admin.addHook('onRequest', async (req) => {
        auth.check(req.headers.authorization, req.socket.remoteAddress);
      });

      admin.get('/contacts', async (req) => {
        const q = parseRequest(ListContactsQuery, req.query ?? {});
        const limit = q.limit ?? 100;
        const list = await access.listContacts(
          {
            limit: limit + 1,
            ...(q.state === undefined ? {} : { state: q.state }),
            ...(q.after === undefined ? {} : { after: q.after }),
          },
          Date.now(),
        );
        const page = list.slice(0, limit);
        const last = page[page.length - 1];
        const body: ListContactsResponse = {
          contacts: page,
          ...(list.length > limit && last ? { next: last.contactId } : {}),
        };
        return body;
      });

      admin.get(`/contacts/${ID}`, async (req) => {
        const info = await access.contact(contactId(req), Date.now());
        if (!info) throw new LatchkeyError('NOT_FOUND', 'no such contact');
        return { contact: info } satisfies ContactResponse;
      });

      const post = (
        action: string,
        run: (id: string, body: unknown) => Promise<ContactResponse> | ContactResponse,
      ): void => {
        admin.post(`/contacts/${ID}/${action}`, async (req) => run(contactId(req), req.body ?? {}));
      };
      const reply = (contact: ContactInfo, rotatedEpoch?: number): ContactResponse =>
        rotatedEpoch === undefined ? { contact } : { contact, rotatedEpoch };
      /** The answer of a removal: rotated (`rotatedEpoch`), nothing to rotate, or pending. */
      const removed = async (id: string, contact: ContactInfo): Promise<ContactResponse> => {
        const r = await settle(id);
        if (!r.pending) return reply(contact, r.epoch);
        admin.log.warn(
          { contactId: id, code: r.error.code, detail: r.error.detail },
          'key rotation owed by an admin action is pending',
        );
        return { contact, rotationPending: true };
      };

      post('close', async (id, body) => {
        parseRequest(CloseContactRequest, body);
        return reply(await access.closeContact(id, Date.now()));
      });
      post('expiry', async (id, body) => {
        const { expiresAt } = parseRequest(SetExpiryRequest, body);
        return reply(await access.setExpiry(id, expiresAt, Date.now()));
      });
      post('kick', async (id, body) => {
        const { participantId } = parseRequest(KickRequest, body);
        const info = await access.kick(id, participantId, Date.now(), { oweRotation: true });
        return removed(id, info);
      });
      post('invite', async (id, body) => {
        const { participantId, role } = parseRequest(InviteRequest, body);
        return reply(await access.invite(id, participantId, role, Date.now()));
      });
      post('transfer', async (id, body) => {
        const { from, to } = parseRequest(TransferRequest, body);
        const info = await access.transfer(id, from, to, Date.now(), { oweRotation: true });
        return removed(id, info);
      });
      registerShred(admin, opts);
    },
    { prefix: ADMIN_PATHS.contacts.slice(0, -'/contacts'.length) },
  );
}

/**
 * POST /admin/v1/contacts/{id}/shred: crypto-shredding on the key service. Every epoch of the
 * contact is destroyed in the key manager (tombstoned, never re-created) and the contact is
 * refused from then on; the relay deletes the ciphertext in the same call on its side.
 */
function registerShred(admin: FastifyInstance, opts: AdminRoutesOptions): void {
  admin.post(`/contacts/${ID}/shred`, async (req) => {
    const id = contactId(req);
    parseRequest(ShredRequest, req.body ?? {});
    if (opts.policy) await opts.policy.shred(id);
    else await opts.keyManager.destroy(id);
    return { contactId: id, keysDestroyed: true } satisfies ShredResponse;
  });
}
