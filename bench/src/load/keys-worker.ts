/**
 * Child process: the load generator of the key-service benchmark. `setup` plays the
 * enterprise's backend (docs/web.md "Replacing the demo backend"): a new random contact id per
 * conversation, a visitor and an agent in each, a participant token for each minted with the
 * API secret (`mintToken`). Nothing is registered ahead: a contact enters the key service on its
 * first key request. `burst` then makes every participant do, at the same moment, what a joining
 * @latchkey/client does (`KeySession.fetchCurrent`, the service key being pinned from the
 * session): one `POST /v1/contact-key` with a fresh session signing key to certify and a fresh
 * X25519 delivery key (the client's default sealed delivery), over a connection of its own
 * (a keep-alive agent per participant, new for each burst: a join opens a new connection).
 * The session keys are made with node:crypto (the client's own generator is pure JS, and would
 * make the load generator, not the key service, the slow part). Every answer is checked for
 * its schema and a certificate of the key we sent; for every `openEvery`-th contact both members
 * also open their sealed key as @latchkey/client does (KeyReceiver.open) and must get the same.
 */
import { generateKeyPairSync } from 'node:crypto';
import { Agent, request } from 'node:http';
import { fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from '@latchkey/crypto/codec';
import { openFromSender } from '@latchkey/crypto/hpke';
import { randomBytes } from '@latchkey/crypto/random';
import {
  CertificateBody,
  ContactKeyResponse,
  KEYS_PATHS,
  keyDeliveryInfo,
  type Role,
} from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { childConfig, serve } from '../ipc.ts';
import { percentiles, type Percentiles } from './stats.ts';

interface Config {
  /** e.g. http://127.0.0.1:8471 */
  url: string;
  secretHex: string;
}

export interface KeysSetupParams {
  contacts: number;
  /** Open the sealed keys of every n-th contact (default 10; 1: all). */
  openEvery?: number;
}

export interface BurstResult {
  requests: number;
  ok: number;
  /** Failed requests, non-200 answers, and answers that fail the client's checks. */
  errors: number;
  errorCodes: Record<string, number>;
  /** From the first request sent to the last answer read (ms). */
  durationMs: number;
  fetchesPerSecond: number;
  /** Request sent (connection opened) to answer read, per fetch (ms). */
  latency: Percentiles;
  /** Request sent to its TCP connection established (ms): the part the listen backlog adds. */
  connect: Percentiles;
}

interface Member {
  index: number;
  contactId: string;
  participantId: string;
  role: Role;
  token: string;
}

interface Pending {
  member: Member;
  /** X25519 delivery key pair (raw, base64url), as KeyReceiver makes it. */
  delivery: { secretKey: string; publicKey: string };
  signingKey: string;
  body: string;
  agent: Agent;
  t0: number;
  /** When the connection was established. */
  tc: number;
  t1: number;
  status: number;
  text: string;
  failure: string | undefined;
}

const config = childConfig<Config>();
const secret = new Uint8Array(Buffer.from(config.secretHex, 'hex'));
const target = new URL(KEYS_PATHS.contactKey, config.url);
/** Longer than any answer should take; a request past it counts as an error. */
const TIMEOUT_MS = 30_000;
let members: Member[] = [];
let openEvery = 10;

const newId = (prefix: string): string => `${prefix}-${toBase64Url(randomBytes(9))}`;

async function setup(p: KeysSetupParams): Promise<{ participants: number }> {
  members = [];
  openEvery = p.openEvery ?? 10;
  for (let i = 0; i < p.contacts; i++) {
    const contactId = newId('c');
    for (const [participantId, role] of [
      [newId('v'), 'visitor'],
      [newId('a'), 'agent'],
    ] as const) {
      const token = await mintToken(secret, { contactId, participantId, role, ttlSeconds: 3600 });
      members.push({ index: i, contactId, participantId, role, token });
    }
  }
  return { participants: members.length };
}

/** Raw key pair of `type` from node:crypto, base64url (JWK `d` and `x` are the raw keys). */
function rawPair(type: 'x25519' | 'ed25519'): { secretKey: string; publicKey: string } {
  const jwk = generateKeyPairSync(type as 'x25519').privateKey.export({ format: 'jwk' });
  return { secretKey: jwk.d ?? '', publicKey: jwk.x ?? '' };
}

/** What a joining client prepares before it asks: its session keys (not timed). */
function prepare(member: Member): Pending {
  const delivery = rawPair('x25519');
  const signingKey = rawPair('ed25519').publicKey;
  return {
    member,
    delivery,
    signingKey,
    body: JSON.stringify({
      signingKey,
      delivery: { suite: 'x25519', publicKey: delivery.publicKey },
    }),
    agent: new Agent({ keepAlive: true, maxSockets: 1 }),
    t0: 0,
    tc: 0,
    t1: 0,
    status: 0,
    text: '',
    failure: undefined,
  };
}

/** Opens the sealed key as KeyReceiver.open does. @throws when it does not open. */
function openKey(p: Pending, res: ContactKeyResponse): Uint8Array {
  const sealed = res.sealedKey;
  if (sealed?.suite !== 'x25519') throw new Error('not sealed to this session');
  return openFromSender({
    suite: 'x25519',
    recipientSecretKey: fromBase64Url(p.delivery.secretKey),
    enc: fromBase64Url(sealed.enc),
    info: utf8Encode(keyDeliveryInfo(res.contactId, res.epoch, p.member.participantId)),
    ciphertext: fromBase64Url(sealed.ciphertext),
  });
}

function fire(p: Pending): Promise<void> {
  return new Promise((resolve) => {
    const done = (failure?: string): void => {
      p.t1 = performance.now();
      p.failure = failure;
      resolve();
    };
    p.t0 = performance.now();
    const req = request(
      target,
      {
        method: 'POST',
        agent: p.agent,
        timeout: TIMEOUT_MS,
        headers: {
          authorization: `Bearer ${p.member.token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(p.body),
        },
      },
      (res) => {
        p.status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          p.text = Buffer.concat(chunks).toString('utf8');
          done();
        });
        res.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'RESPONSE_ERROR'));
      },
    );
    req.once('socket', (socket) =>
      socket.once('connect', () => {
        p.tc = performance.now();
      }),
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'REQUEST_ERROR'));
    req.end(p.body);
  });
}

/**
 * The client's checks of one answer; returns the content key (base64url, when opened) or the
 * error code. Run after the burst, so that the burst's timing is the key service's and the
 * network's.
 */
function check(p: Pending): { key: string | undefined } | { code: string } {
  if (p.failure !== undefined) return { code: p.failure };
  let json: unknown;
  try {
    json = JSON.parse(p.text);
  } catch {
    return { code: `HTTP_${p.status}` };
  }
  if (p.status !== 200) {
    const code = (json as { error?: { code?: unknown } }).error?.code;
    return { code: typeof code === 'string' ? code : `HTTP_${p.status}` };
  }
  const parsed = ContactKeyResponse.safeParse(json);
  if (!parsed.success) return { code: 'INVALID_RESPONSE' };
  const res = parsed.data;
  if (res.contactId !== p.member.contactId) return { code: 'WRONG_CONTACT' };
  if (!res.sealedKey) return { code: 'NOT_SEALED' };
  let key: Uint8Array | undefined;
  if (p.member.index % openEvery === 0) {
    try {
      key = openKey(p, res);
    } catch {
      return { code: 'SEALED_KEY_FAILED' };
    }
  }
  if (!res.certificate) return { code: 'NO_CERTIFICATE' };
  const body = CertificateBody.safeParse(
    JSON.parse(utf8Decode(fromBase64Url(res.certificate.body))),
  );
  if (
    !body.success ||
    body.data.publicKey !== p.signingKey ||
    body.data.participantId !== p.member.participantId
  ) {
    return { code: 'WRONG_CERTIFICATE' };
  }
  return { key: key && `${res.epoch}:${toBase64Url(key)}` };
}

async function burst(): Promise<BurstResult> {
  if (members.length === 0) throw new Error('setup first');
  const all = members.map(prepare);
  const start = performance.now();
  await Promise.all(all.map(fire));
  const end = Math.max(...all.map((p) => p.t1));
  for (const p of all) p.agent.destroy();

  const errorCodes: Record<string, number> = {};
  const keyOf = new Map<string, string>();
  let ok = 0;
  for (const p of all) {
    const r = check(p);
    let code = 'code' in r ? r.code : undefined;
    if ('key' in r && r.key !== undefined) {
      const seen = keyOf.get(p.member.contactId);
      if (seen !== undefined && seen !== r.key) code = 'KEY_MISMATCH';
      keyOf.set(p.member.contactId, r.key);
    }
    if (code === undefined) ok++;
    else errorCodes[code] = (errorCodes[code] ?? 0) + 1;
  }
  const durationMs = end - start;
  return {
    requests: all.length,
    ok,
    errors: all.length - ok,
    errorCodes,
    durationMs: Math.round(durationMs * 10) / 10,
    fetchesPerSecond: Math.round((ok / durationMs) * 1000),
    latency: percentiles(all.map((p) => p.t1 - p.t0)),
    connect: percentiles(all.filter((p) => p.tc > 0).map((p) => p.tc - p.t0)),
  };
}

serve({ ready: true }, { setup, burst });
