/**
 * The wrap-model routes of the reference key manager (docs/key-manager-api.yaml): KEK metadata,
 * wrap, unwrap, generate, rewrap and destroy under `/v1/keys/{keyId}`. Keys arrive and leave
 * base64url and are zeroed once answered.
 */
import type { FastifyInstance } from 'fastify';
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { generateContentKey } from '@latchkey/crypto/wrap';
import {
  KeyId,
  KmDestroyRequest,
  KmGenerateRequest,
  KmUnwrapRequest,
  KmWrapRequest,
  type KmGenerateResponse,
  type KmKeyMetadata,
  type KmUnwrapResponse,
  type KmWrapResponse,
} from '@latchkey/keys';
import { param, parse, type RouteContext } from './_request.ts';

/** Adds the wrap-model routes to `app`. */
export function wrapRoutes(
  app: FastifyInstance,
  { store, note, refuseRevoked }: RouteContext,
): void {
  app.get('/v1/keys/:keyId', async (req): Promise<KmKeyMetadata> => {
    const keyId = param(req, 'keyId', KeyId);
    note(req, { operation: 'metadata' });
    return {
      keyId,
      algorithm: 'AES-256-GCM',
      primaryVersion: store.primaryVersion(keyId),
      state: 'enabled',
      operations: ['wrap', 'unwrap', 'generate', 'rewrap', 'destroy'],
      createdAt: store.createdAt(keyId),
    };
  });

  app.post('/v1/keys/:keyId/wrap', async (req): Promise<KmWrapResponse> => {
    const keyId = param(req, 'keyId', KeyId);
    const b = parse(KmWrapRequest, req.body);
    note(req, { operation: 'wrap', contactId: b.contactId, epoch: b.epoch, reason: b.reason });
    refuseRevoked(b.contactId, keyId);
    const key = fromBase64Url(b.key);
    const { wrapped, keyVersion } = await store.wrap(keyId, key, b);
    key.fill(0);
    return { wrapped: toBase64Url(wrapped), keyVersion };
  });

  app.post('/v1/keys/:keyId/unwrap', async (req): Promise<KmUnwrapResponse> => {
    const keyId = param(req, 'keyId', KeyId);
    const b = parse(KmUnwrapRequest, req.body);
    note(req, { operation: 'unwrap', contactId: b.contactId, epoch: b.epoch, reason: b.reason });
    refuseRevoked(b.contactId, keyId);
    const { key } = await store.unwrap(keyId, fromBase64Url(b.wrapped), b);
    const out = toBase64Url(key);
    key.fill(0);
    return { key: out };
  });

  app.post('/v1/keys/:keyId/generate', async (req): Promise<KmGenerateResponse> => {
    const keyId = param(req, 'keyId', KeyId);
    const b = parse(KmGenerateRequest, req.body);
    note(req, { operation: 'generate', contactId: b.contactId, epoch: b.epoch, reason: b.reason });
    refuseRevoked(b.contactId, keyId);
    const key = generateContentKey();
    const { wrapped, keyVersion } = await store.wrap(keyId, key, b);
    const out = toBase64Url(key);
    key.fill(0);
    return { key: out, wrapped: toBase64Url(wrapped), keyVersion };
  });

  app.post('/v1/keys/:keyId/rewrap', async (req): Promise<KmWrapResponse> => {
    const keyId = param(req, 'keyId', KeyId);
    const b = parse(KmUnwrapRequest, req.body);
    note(req, { operation: 'rewrap', contactId: b.contactId, epoch: b.epoch, reason: b.reason });
    refuseRevoked(b.contactId, keyId);
    const { key } = await store.unwrap(keyId, fromBase64Url(b.wrapped), b);
    const { wrapped, keyVersion } = await store.wrap(keyId, key, b);
    key.fill(0);
    return { wrapped: toBase64Url(wrapped), keyVersion };
  });

  // A shred in the wrap model: refuse the contact under this key from now on, so that a copy of
  // Latchkey's wrapped keys never unwraps again.
  app.post('/v1/keys/:keyId/destroy', async (req, reply) => {
    const keyId = param(req, 'keyId', KeyId);
    const b = parse(KmDestroyRequest, req.body);
    note(req, { operation: 'destroy', contactId: b.contactId, reason: b.reason });
    store.destroy(keyId, b.contactId);
    return reply.code(204).send();
  });
}
