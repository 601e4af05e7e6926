/**
 * Who may receive keys (issue 4), on a real key service over 127.0.0.1 with real SQLite files
 * (openKeyService): EdDSA tokens, wrong-contact and not-yet-valid tokens, the participant limit,
 * kick and transfer through the admin API (FORBIDDEN from then on, key rotated, newcomer gets
 * every epoch), expiry, admin authentication, and that the deny table survives a restart.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ContactKeyResponse,
  ContactResponse,
  ListContactsResponse,
  type Role,
} from '@latchkey/protocol';
import {
  adminAuthorization,
  deriveAdminKey,
  generateTokenKeyPair,
  mintToken,
  type TokenSigningKey,
} from '@latchkey/tokens';
import { openKeyService } from '../src/open-key-service.ts';
import type { KeyService } from '../src/server.ts';

const secret = crypto.getRandomValues(new Uint8Array(32));
const masterKey = crypto.getRandomValues(new Uint8Array(32));
const ADMIN = adminAuthorization(deriveAdminKey(secret));
let dir: string;
let svc: KeyService;

type Options = Parameters<typeof openKeyService>[0];
async function open(
  over: Partial<Omit<Options, 'apiSecret'>> & { apiSecret?: Uint8Array | undefined } = {},
): Promise<KeyService> {
  const { apiSecret: given, ...rest } = over;
  const apiSecret = 'apiSecret' in over ? given : secret;
  svc = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    masterKey,
    allowPlainKeyDelivery: true,
    ...rest,
    ...(apiSecret === undefined ? {} : { apiSecret }),
  });
  return svc;
}

async function key(
  contactId: string,
  participantId: string,
  role: Role = 'visitor',
  opts: { epoch?: number; signer?: TokenSigningKey; notBefore?: number } = {},
): Promise<{ status: number; body: unknown }> {
  const token = await mintToken(opts.signer ?? secret, {
    contactId,
    participantId,
    role,
    ttlSeconds: 600,
    ...(opts.notBefore === undefined ? {} : { notBefore: opts.notBefore }),
  });
  const res = await fetch(`${svc.url}/v1/contact-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
  });
  return { status: res.status, body: await res.json() };
}

const code = (r: { body: unknown }): string | undefined =>
  (r.body as { error?: { code?: string } }).error?.code;

async function admin(
  path: string,
  body?: unknown,
  auth = ADMIN,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${svc.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      authorization: auth,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-keyd-members-'));
});
afterEach(async () => {
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('key service: tokens', () => {
  it('serves EdDSA tokens with only the public key; refuses forged, HS256, not-yet-valid ones', async () => {
    const pair = generateTokenKeyPair();
    await open({ apiSecret: undefined, tokenPublicKey: pair.publicKey });
    expect((await key('c1', 'v', 'visitor', { signer: pair.privateKey })).status).toBe(200);
    expect(
      code(await key('c1', 'v', 'visitor', { signer: generateTokenKeyPair().privateKey })),
    ).toBe('AUTH_INVALID');
    expect(code(await key('c1', 'v'))).toBe('AUTH_INVALID');
    const later = Math.floor(Date.now() / 1000) + 600;
    expect(
      code(await key('c1', 'v', 'visitor', { signer: pair.privateKey, notBefore: later })),
    ).toBe('AUTH_INVALID');
    // no API secret, no admin key: no admin API
    expect((await admin('/admin/v1/contacts')).status).toBe(404);
  });

  it("hands out only the token's own contact's key", async () => {
    await open();
    const a = ContactKeyResponse.parse((await key('c1', 'v')).body);
    const b = ContactKeyResponse.parse((await key('c2', 'v')).body);
    expect(a.contactId).toBe('c1');
    expect(b.contactId).toBe('c2');
    expect(a.key).not.toBe(b.key);
  });
});

describe('key service: membership', () => {
  it('holds the participant limit (CONTACT_FULL for the 11th) and a fixed role', async () => {
    await open();
    for (let i = 0; i < 10; i++) expect((await key('c1', `p${i}`, 'agent')).status).toBe(200);
    const full = await key('c1', 'p10', 'agent');
    expect([full.status, code(full)]).toEqual([409, 'CONTACT_FULL']);
    expect((await key('c1', 'p3', 'agent')).status).toBe(200);
    expect(code(await key('c1', 'p3', 'supervisor'))).toBe('FORBIDDEN');
  });

  it('a kicked participant gets FORBIDDEN, the key rotates, and this survives a restart', async () => {
    await open();
    const before = ContactKeyResponse.parse((await key('c1', 'a', 'agent')).body);
    await key('c1', 'v');
    const r = await admin('/admin/v1/contacts/c1/kick', { participantId: 'a' });
    expect(r.status).toBe(200);
    const res = ContactResponse.parse(r.body);
    expect(res.rotatedEpoch).toBe(before.currentEpoch + 1);
    expect(res.contact.participants.find((p) => p.participantId === 'a')?.state).toBe('kicked');
    const refused = await key('c1', 'a', 'agent');
    expect([refused.status, code(refused)]).toEqual([403, 'FORBIDDEN']);
    expect(code(await key('c1', 'a', 'agent', { epoch: 0 }))).toBe('FORBIDDEN');
    expect(ContactKeyResponse.parse((await key('c1', 'v')).body).currentEpoch).toBe(1);
    await svc.close();
    await open();
    expect(code(await key('c1', 'a', 'agent'))).toBe('FORBIDDEN');
    expect(statSync(join(dir, 'keys', 'access.db')).mode & 0o077).toBe(0);
  });

  it('transfer: the leaver is refused, the newcomer gets every epoch (the whole history)', async () => {
    await open();
    await key('c1', 'v');
    const old = ContactKeyResponse.parse((await key('c1', 'a', 'agent')).body);
    const r = ContactResponse.parse(
      (await admin('/admin/v1/contacts/c1/transfer', { from: 'a', to: 'b' })).body,
    );
    expect(r.contact.participants.map((p) => [p.participantId, p.state])).toEqual([
      ['v', 'active'],
      ['a', 'left'],
      ['b', 'active'],
    ]);
    expect(code(await key('c1', 'a', 'agent'))).toBe('FORBIDDEN');
    const b0 = ContactKeyResponse.parse((await key('c1', 'b', 'agent', { epoch: 0 })).body);
    expect(b0.key).toBe(old.key);
    expect(b0.currentEpoch).toBe(1);
    expect((await key('c1', 'b', 'agent', { epoch: 1 })).status).toBe(200);
  });

  it('invite, close and expiry: closed contacts keep serving keys, expired ones do not', async () => {
    await open();
    await key('c1', 'v');
    expect(
      (await admin('/admin/v1/contacts/c1/invite', { participantId: 's', role: 'supervisor' }))
        .status,
    ).toBe(200);
    expect((await admin('/admin/v1/contacts/c1/close', {})).status).toBe(200);
    expect((await key('c1', 's', 'supervisor')).status).toBe(200);
    const list = ListContactsResponse.parse((await admin('/admin/v1/contacts?state=closed')).body);
    expect(list.contacts.map((c) => [c.contactId, c.participants.length])).toEqual([['c1', 2]]);
    await admin('/admin/v1/contacts/c1/expiry', { expiresAt: Date.now() - 1 });
    const gone = await key('c1', 'v');
    expect([gone.status, code(gone)]).toEqual([410, 'CONTACT_EXPIRED']);
  });

  it('admin API: wrong secret or unknown key id -> 401, bad body -> 400', async () => {
    await open();
    const wrong = adminAuthorization({ id: 'default', secret: new Uint8Array(32).fill(5) });
    expect(await admin('/admin/v1/contacts', undefined, wrong)).toMatchObject({
      status: 401,
      body: { error: { code: 'AUTH_INVALID' } },
    });
    expect((await admin('/admin/v1/contacts/c1/kick', { participantId: 'a' }, wrong)).status).toBe(
      401,
    );
    expect((await fetch(`${svc.url}/admin/v1/contacts`)).status).toBe(401);
    expect((await admin('/admin/v1/contacts/c1/kick', { who: 'a' })).status).toBe(400);
    expect(
      (await admin('/admin/v1/contacts/c1/invite', { participantId: 'x', role: 'visitor' })).status,
    ).toBe(400);
    expect((await admin('/admin/v1/contacts/nope')).status).toBe(404);
  });
});
