/**
 * The example wrapped key of docs/key-management.md ("Signing test vectors", "Example wrapped
 * key"), read out of the Markdown: the reference key manager with the documented root key and
 * secret unwraps the documented `wrapped` to the documented key through the HTTP adapter, refuses
 * it for another epoch or contact, and the documented bodies are valid wire messages.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AuthenticationError } from '@latchkey/crypto/aead';
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import {
  KmUnwrapRequest,
  KmUnwrapResponse,
  KmWrapRequest,
  KmWrapResponse,
  createHttpWrapper,
  decodeSecretText,
  type HttpKeyWrapper,
} from '@latchkey/keys';
import { markdownVectors } from '../../../packages/keys/test/_doc-vectors.ts';
import { tempDir } from '../../../packages/keys/test/_helpers.ts';
import { startKms, type Kms } from '../src/kms.ts';

const { vectors, example } = markdownVectors();
const v1 = vectors[0]?.fields ?? {};
const doc = (name: string): string => {
  const value = example[name];
  if (value === undefined) throw new Error(`no "${name}" in the example`);
  return value;
};

let kms: Kms;
let wrapper: HttpKeyWrapper;
let cleanup: () => void;

beforeAll(async () => {
  const t = tempDir('latchkey-example-wrap-');
  cleanup = t.cleanup;
  const secret = decodeSecretText(v1['secret (hex)'] ?? '', 'secret');
  kms = await startKms({
    path: join(t.dir, 'kms.db'),
    rootKey: decodeSecretText(doc('root key (hex)'), 'root', { exactBytes: 32 }),
    clients: { [v1['x-latchkey-client'] ?? '']: secret },
  });
  wrapper = createHttpWrapper({
    url: kms.url,
    auth: { type: 'hmac', clientId: v1['x-latchkey-client'] ?? '', secret },
    keyId: 'latchkey-kek',
    retries: 0,
  });
  // A fresh key manager makes the KEK's version 1 on first use (here: its metadata).
  expect((await wrapper.metadata()).primaryVersion).toBe(1);
});

afterAll(async () => {
  await wrapper.close();
  await kms.close();
  cleanup();
});

it('the documented bodies are wire messages, and the wrap request is vector 1', () => {
  expect(doc('wrap request')).toBe(v1.body);
  expect(KmWrapRequest.parse(JSON.parse(doc('wrap request')))).toMatchObject({ reason: 'create' });
  expect(KmWrapResponse.parse(JSON.parse(doc('wrap answer')))).toMatchObject({ keyVersion: 1 });
  const unwrap = KmUnwrapRequest.parse(JSON.parse(doc('unwrap request')));
  expect(unwrap.wrapped).toBe(KmWrapResponse.parse(JSON.parse(doc('wrap answer'))).wrapped);
  expect(fromBase64Url(unwrap.wrapped)).toHaveLength(65);
  expect(KmUnwrapResponse.parse(JSON.parse(doc('unwrap answer'))).key).toBe(
    KmWrapRequest.parse(JSON.parse(doc('wrap request'))).key,
  );
});

it('the reference key manager unwraps the documented wrapped key to the documented key', async () => {
  const req = KmUnwrapRequest.parse(JSON.parse(doc('unwrap request')));
  const key = await wrapper.unwrap(fromBase64Url(req.wrapped), {
    contactId: req.contactId,
    epoch: req.epoch,
    reason: req.reason,
  });
  expect(toBase64Url(key)).toBe(KmUnwrapResponse.parse(JSON.parse(doc('unwrap answer'))).key);
  const last = kms.audit().at(-1);
  expect(last).toMatchObject({ operation: 'unwrap', reason: 'fetch', status: 200 });
});

it('and refuses it for another epoch or contact (DECRYPT_FAILED)', async () => {
  const req = KmUnwrapRequest.parse(JSON.parse(doc('unwrap request')));
  const wrapped = fromBase64Url(req.wrapped);
  await expect(
    wrapper.unwrap(wrapped, { contactId: req.contactId, epoch: 1, reason: 'fetch' }),
  ).rejects.toBeInstanceOf(AuthenticationError);
  await expect(
    wrapper.unwrap(wrapped, { contactId: 'c-43', epoch: 0, reason: 'fetch' }),
  ).rejects.toBeInstanceOf(AuthenticationError);
});
