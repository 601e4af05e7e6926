/**
 * The key-store-model routes of the reference key manager (docs/key-manager-api.yaml): create,
 * read, rotate, fetch a key of an epoch and destroy a contact under `/v1/store/contacts`. The
 * content keys are its own, wrapped under the KEK whose key id is `store`.
 */
import type { FastifyInstance } from 'fastify';
import { toBase64Url } from '@latchkey/crypto/codec';
import { Epoch, Id } from '@latchkey/protocol';
import { KmStoreRequest, type KmStoreContact, type KmStoreKey } from '@latchkey/keys';
import { fail, param, parse, type RouteContext } from './_request.ts';

/** The KEK of the key-store model's keys. */
const STORE_KEY = 'store';

/** Adds the key-store-model routes to `app`. */
export function storeRoutes(
  app: FastifyInstance,
  { store, note, refuseRevoked }: RouteContext,
): void {
  app.post('/v1/store/contacts/:contactId', async (req): Promise<KmStoreContact> => {
    const contactId = param(req, 'contactId', Id);
    const b = parse(KmStoreRequest, req.body);
    note(req, { operation: 'store.create', contactId, reason: b.reason });
    refuseRevoked(contactId);
    return { contactId, currentEpoch: await store.storeCreate(STORE_KEY, contactId) };
  });

  app.get('/v1/store/contacts/:contactId', async (req): Promise<KmStoreContact> => {
    const contactId = param(req, 'contactId', Id);
    note(req, { operation: 'store.metadata', contactId });
    return { contactId, currentEpoch: store.storeCurrent(contactId) };
  });

  app.post('/v1/store/contacts/:contactId/rotate', async (req): Promise<KmStoreContact> => {
    const contactId = param(req, 'contactId', Id);
    const b = parse(KmStoreRequest, req.body);
    note(req, { operation: 'store.rotate', contactId, reason: b.reason });
    refuseRevoked(contactId);
    return { contactId, currentEpoch: await store.storeRotate(STORE_KEY, contactId) };
  });

  app.get('/v1/store/contacts/:contactId/keys/:epoch', async (req): Promise<KmStoreKey> => {
    const contactId = param(req, 'contactId', Id);
    const raw = (req.params as Record<string, string>).epoch;
    const epoch = raw === 'current' ? 'current' : /^\d{1,10}$/.test(raw ?? '') ? Number(raw) : -1;
    if (epoch !== 'current' && !Epoch.safeParse(epoch).success)
      fail('BAD_REQUEST', 'invalid epoch');
    const reason = (req.query as Record<string, unknown>).reason;
    note(req, {
      operation: 'store.get',
      contactId,
      epoch: epoch === 'current' ? null : epoch,
      reason: typeof reason === 'string' ? reason.slice(0, 32) : null,
    });
    refuseRevoked(contactId);
    const got = await store.storeGet(STORE_KEY, contactId, epoch);
    note(req, { epoch: got.epoch });
    const key = toBase64Url(got.key);
    got.key.fill(0);
    return { contactId, epoch: got.epoch, currentEpoch: got.currentEpoch, key };
  });

  app.delete('/v1/store/contacts/:contactId', async (req, reply) => {
    const contactId = param(req, 'contactId', Id);
    const reason = (req.query as Record<string, unknown>).reason;
    if (reason !== 'destroy') fail('BAD_REQUEST', 'reason must be destroy');
    note(req, { operation: 'store.destroy', contactId, reason });
    store.storeDestroy(contactId);
    return reply.code(204).send();
  });
}
