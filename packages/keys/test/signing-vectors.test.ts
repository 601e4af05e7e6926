/**
 * The request-signing test vectors of docs/key-management.md ("Signing test vectors"), read out
 * of the Markdown and its OpenAPI mirror: both documents say the same, the key service's own
 * signer (`signKmRequest`, with the nonce bytes and time of the vector) and its HTTP client
 * produce exactly the documented headers and bytes, and the server-side verifier accepts them.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type * as RandomModule from '@latchkey/crypto/random';
import { fromBase64Url, toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { hmacSha256, sha256 } from '@latchkey/crypto/mac';
import {
  KM_AUTH_HEADERS,
  createHttpWrapper,
  createKmRequestVerifier,
  decodeSecretText,
  openHttpKeyStoreManager,
  signKmRequest,
} from '../src/index.ts';
import { markdownVectors, openApiVectors, type DocVector } from './_doc-vectors.ts';

/** Nonce bytes the next randomBytes(16) calls return (the vector's), else real randomness. */
const nonces: Uint8Array[] = [];
vi.mock('@latchkey/crypto/random', async (importOriginal) => {
  const real = await importOriginal<typeof RandomModule>();
  return {
    ...real,
    randomBytes: (n: number): Uint8Array => {
      const next = n === 16 ? nonces.shift() : undefined;
      return next ?? real.randomBytes(n);
    },
  };
});

afterEach(() => {
  nonces.length = 0;
  vi.restoreAllMocks();
});

const md = markdownVectors();
const api = openApiVectors();
const HEADER_NAMES = Object.values(KM_AUTH_HEADERS);

function field(v: DocVector, name: string): string {
  const value = v.fields[name];
  if (value === undefined) throw new Error(`${v.name}: no "${name}" in the docs`);
  return value;
}

function expectedHeaders(v: DocVector): Record<string, string> {
  return Object.fromEntries(HEADER_NAMES.map((h) => [h, field(v, h)]));
}

interface Seen {
  method?: string | undefined;
  url?: string | undefined;
  body?: string | undefined;
  headers?: http.IncomingHttpHeaders | undefined;
}

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

describe('signing test vectors in the docs', () => {
  it('are published, the same in the Markdown and the OpenAPI document', () => {
    expect(md.vectors.length).toBeGreaterThanOrEqual(2);
    expect(api.vectors.map((v) => v.name)).toEqual(md.vectors.map((v) => v.name));
    expect(api.vectors.map((v) => v.fields)).toEqual(md.vectors.map((v) => v.fields));
    expect(api.example).toEqual(md.example);
    expect(Object.keys(md.example)).toEqual([
      'root key (hex)',
      'wrap request',
      'wrap answer',
      'unwrap request',
      'unwrap answer',
    ]);
  });

  it('spell out the encodings word for word alike in both documents', () => {
    const flat = (s: string): string => s.replace(/\s+/g, ' ').trim();
    expect(md.encodings.map((b) => /^- \*\*([^*]+)\*\*/.exec(b)?.[1])).toEqual([
      'base64url',
      'Shared secret',
      'Timestamp',
      'Nonce',
      'Body hash',
      'Signature',
      'String to sign',
    ]);
    for (const bullet of md.encodings) expect(flat(api.description)).toContain(flat(bullet));
  });

  for (const v of md.vectors) {
    describe(v.name, () => {
      const secret = decodeSecretText(field(v, 'secret (hex)'), 'secret (hex)');
      const body = utf8Encode(field(v, 'body'));
      const now = Number(field(v, 'x-latchkey-timestamp'));
      const request = { method: field(v, 'method'), path: field(v, 'path'), body };
      const clientId = field(v, 'x-latchkey-client');

      it('has one secret in both encodings, and the documented sizes', () => {
        expect(secret).toHaveLength(32);
        expect(decodeSecretText(field(v, 'secret (base64url)'), 'b64')).toEqual(secret);
        expect(decodeSecretText(`hex:${field(v, 'secret (hex)')}`, 'h')).toEqual(secret);
        expect(decodeSecretText(`base64url:${field(v, 'secret (base64url)')}`, 'b64')).toEqual(
          secret,
        );
        expect(field(v, 'x-latchkey-nonce')).toMatch(/^[A-Za-z0-9_-]{22}$/);
        expect(fromBase64Url(field(v, 'x-latchkey-nonce'))).toEqual(
          hex(field(v, 'nonce bytes (hex)')),
        );
        expect(field(v, 'body hash')).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(field(v, 'x-latchkey-signature')).toMatch(/^v1=[A-Za-z0-9_-]{43}$/);
        expect(toBase64Url(sha256(body))).toBe(field(v, 'body hash'));
      });

      it('signKmRequest gives the documented headers', () => {
        nonces.push(hex(field(v, 'nonce bytes (hex)')));
        expect(signKmRequest(request, { clientId, secret }, now)).toEqual(expectedHeaders(v));
      });

      it('the string to sign is the documented one, and its MAC the signature', () => {
        const sts = v.stringToSign;
        expect(sts).toBeDefined();
        expect(sts?.split('\n')).toEqual([
          'latchkey.km.v1',
          request.method,
          request.path,
          String(now),
          field(v, 'x-latchkey-nonce'),
          clientId,
          field(v, 'body hash'),
        ]);
        const mac = toBase64Url(hmacSha256(secret, utf8Encode(sts ?? '')));
        expect(`v1=${mac}`).toBe(field(v, 'x-latchkey-signature'));
      });

      it('the verifier of the reference key manager accepts them, and nothing else', () => {
        const verify = createKmRequestVerifier({
          secrets: new Map([[clientId, secret]]),
          now: () => now + 1000,
        });
        expect(verify(request, expectedHeaders(v))).toEqual({ ok: true, clientId });
        const other = createKmRequestVerifier({
          secrets: new Map([[clientId, secret]]),
          now: () => now,
        });
        const tampered = { ...request, body: utf8Encode(`${field(v, 'body')} `) };
        expect(other(tampered, expectedHeaders(v))).toMatchObject({
          ok: false,
          code: 'AUTH_INVALID',
        });
      });
    });
  }

  it('the HTTP client sends exactly the documented bytes and headers (vector 1, wrap)', async () => {
    const v = md.vectors[0];
    if (v === undefined) throw new Error('no vector 1');
    const seen: Seen = {};
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        Object.assign(seen, {
          method: req.method,
          url: req.url,
          body: Buffer.concat(chunks).toString('utf8'),
          headers: req.headers,
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end(md.example['wrap answer']);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const base = field(v, 'path').replace(/\/v1\/.*$/, '');
    const wrapper = createHttpWrapper({
      url: `http://127.0.0.1:${port}${base}`,
      auth: {
        type: 'hmac',
        clientId: field(v, 'x-latchkey-client'),
        secret: decodeSecretText(field(v, 'secret (hex)'), 's'),
      },
      keyId: 'latchkey-kek',
      retries: 0,
    });
    try {
      const body = JSON.parse(field(v, 'body')) as {
        contactId: string;
        epoch: number;
        reason: 'create';
        key: string;
      };
      nonces.push(hex(field(v, 'nonce bytes (hex)')));
      vi.spyOn(Date, 'now').mockReturnValue(Number(field(v, 'x-latchkey-timestamp')));
      const wrapped = await wrapper.wrap(fromBase64Url(body.key), {
        contactId: body.contactId,
        epoch: body.epoch,
        reason: body.reason,
      });
      expect(seen.method).toBe(field(v, 'method'));
      expect(seen.url).toBe(field(v, 'path'));
      expect(seen.body).toBe(field(v, 'body'));
      for (const [h, value] of Object.entries(expectedHeaders(v)))
        expect(seen.headers?.[h]).toBe(value);
      const answer = JSON.parse(md.example['wrap answer'] ?? '{}') as { wrapped: string };
      expect(toBase64Url(wrapped)).toBe(answer.wrapped);
    } finally {
      await wrapper.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('the HTTP client sends exactly the documented request (vector 2, key-store fetch)', async () => {
    const v = md.vectors[1];
    if (v === undefined) throw new Error('no vector 2');
    const seen: Seen[] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({
          method: req.method,
          url: req.url,
          body: Buffer.concat(chunks).toString('utf8'),
          headers: req.headers,
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            contactId: 'c-42',
            epoch: 0,
            currentEpoch: 0,
            key: toBase64Url(new Uint8Array(32).fill(1)),
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const km = openHttpKeyStoreManager({
      url: `http://127.0.0.1:${port}`,
      auth: {
        type: 'hmac',
        clientId: field(v, 'x-latchkey-client'),
        secret: decodeSecretText(field(v, 'secret (hex)'), 's'),
      },
      retries: 0,
    });
    try {
      nonces.push(hex(field(v, 'nonce bytes (hex)')));
      vi.spyOn(Date, 'now').mockReturnValue(Number(field(v, 'x-latchkey-timestamp')));
      await km.getContentKey('c-42');
      const first = seen[0];
      expect(first?.method).toBe(field(v, 'method'));
      expect(first?.url).toBe(field(v, 'path'));
      expect(first?.body).toBe(field(v, 'body'));
      for (const [h, value] of Object.entries(expectedHeaders(v)))
        expect(first?.headers?.[h]).toBe(value);
    } finally {
      await km.close();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('shared secret encodings (docs/key-management.md "Signing test vectors")', () => {
  // 64 characters of hex digits are valid base64url too: unprefixed they read as hex (32
  // bytes), with the base64url: prefix as base64url (48 bytes).
  const ambiguous = 'a'.repeat(64);
  it('reads unprefixed hex-looking text as hex, and the prefix decides otherwise', () => {
    expect(decodeSecretText(ambiguous, 's')).toEqual(new Uint8Array(32).fill(0xaa));
    expect(decodeSecretText(`base64url:${ambiguous}`, 's')).toEqual(fromBase64Url(ambiguous));
    expect(decodeSecretText(`base64url:${ambiguous}`, 's')).toHaveLength(48);
  });
  it('refuses a prefixed text of the other encoding, without echoing it', () => {
    let message = '';
    try {
      decodeSecretText(`hex:${'Zz'.repeat(32)}`, 'LATCHKEY_KMS_SECRET');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/LATCHKEY_KMS_SECRET must be .* not hex/);
    expect(message).not.toContain('Zz');
    expect(() => decodeSecretText(`hex:${'ab'.repeat(16)}00`.slice(0, 20), 's')).toThrow(
      /decodes to 8 bytes/,
    );
  });
});
