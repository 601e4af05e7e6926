/**
 * One webhook HTTP call, made safely (docs/webhooks.md "Safe delivery"):
 * - HTTPS is required unless the endpoint resolves to a loopback address;
 * - the host name is resolved once, every address is checked against the special-purpose ranges
 *   (`_address.ts`) and the allowlist, and the connection goes to that very address (our own
 *   `lookup`), so a DNS answer that changes between check and connect (rebinding) cannot steer it;
 * - certificates are fully verified against the host name (Node's default chain and name checks,
 *   plus extra CAs when given); failures are named: name mismatch, expired, not yet valid,
 *   untrusted chain;
 * - bounded time (one deadline for connect, TLS, request and response headers) and response size;
 *   redirects are never followed (a 3xx is a failure).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import { tlsFailureKind, type TlsFailureKind, type WebhookErrorCode } from '@latchkey/protocol';
import {
  addressAllowlist,
  isLoopbackAddress,
  isSpecialAddress,
  normaliseAddress,
} from './_address.ts';

export interface DeliveryOptions {
  /** IPs/CIDR ranges that may be reached although special (private, loopback, ...). */
  allowlist?: readonly string[];
  /** Deadline of one call in ms (default 10 s). */
  timeoutMs?: number;
  /** Bytes of the response body read at most (default 64 KiB); the rest is discarded. */
  maxResponseBytes?: number;
  /** Extra trusted CA certificates (PEM), on top of Node's defaults. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Resolver (default dns.promises.lookup with all addresses); tests give their own. */
  resolve?: (host: string) => Promise<{ address: string; family: number }[]>;
}

export type DeliveryResult = { ok: true; status: number } | DeliveryFailure;
export interface DeliveryFailure {
  ok: false;
  status: number | null;
  code: WebhookErrorCode;
  message: string;
}

/** Webhook error code and words per kind of TLS failure (@latchkey/protocol's one map). */
const TLS_ERRORS: Readonly<Record<TlsFailureKind, [WebhookErrorCode, string]>> = {
  NAME_MISMATCH: ['TLS_NAME_MISMATCH', 'certificate does not match the host name'],
  EXPIRED: ['TLS_EXPIRED', 'certificate has expired'],
  NOT_YET_VALID: ['TLS_NOT_YET_VALID', 'certificate is not yet valid'],
  UNTRUSTED: ['TLS_UNTRUSTED', 'certificate not trusted (untrusted chain)'],
  REVOKED: ['TLS_UNTRUSTED', 'certificate revoked'],
  NOT_TLS: ['TLS_FAILED', 'the server did not answer with TLS'],
  HANDSHAKE: ['TLS_FAILED', 'TLS handshake failed'],
};

function fail(
  code: WebhookErrorCode,
  message: string,
  status: number | null = null,
): DeliveryFailure {
  return { ok: false, status, code, message: message.slice(0, 300) };
}

/** Maps a socket/TLS error to a clear, stable code. */
export function classifyError(err: unknown): DeliveryFailure {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    const kind = tlsFailureKind(code);
    if (kind !== undefined) {
      const [c, words] = TLS_ERRORS[kind];
      return fail(c, `${words} (${code})`);
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      return fail('DNS_FAILED', `host name did not resolve (${code})`);
    return fail('CONNECT_FAILED', `connection failed (${code})`);
  }
  return fail('CONNECT_FAILED', err instanceof Error ? err.message : 'connection failed');
}

/**
 * Checks where a URL may go and picks the address to connect to.
 * @returns the address, or a failure naming why it is refused.
 */
export async function resolveTarget(
  url: URL,
  opts: Pick<DeliveryOptions, 'allowlist' | 'resolve'> = {},
): Promise<{ ok: true; address: string; family: 4 | 6 } | DeliveryFailure> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return fail('BAD_URL', 'only http(s) URLs');
  if (url.username || url.password)
    return fail('BAD_URL', 'credentials in the URL are not allowed');
  const allowed = addressAllowlist(opts.allowlist ?? []);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addrs: { address: string; family: number }[];
  if (isIP(host) !== 0) addrs = [{ address: host, family: isIP(host) }];
  else {
    try {
      addrs = await (opts.resolve ?? ((h) => dnsLookup(h, { all: true, verbatim: true })))(host);
    } catch (err) {
      return classifyError(err);
    }
    if (addrs.length === 0) return fail('DNS_FAILED', `${host} did not resolve`);
  }
  // Every address must pass, not just the first: otherwise a name with one public and one
  // private answer would let the connection land on the private one.
  for (const a of addrs) {
    if (isSpecialAddress(a.address) && !allowed(a.address)) {
      const what = isLoopbackAddress(a.address) ? 'a loopback' : 'a private or special-purpose';
      return fail(
        'ADDRESS_REFUSED',
        `${host} resolves to ${normaliseAddress(a.address)}, ${what} address not on the allowlist`,
      );
    }
  }
  const first = addrs[0] as { address: string; family: number };
  if (url.protocol === 'http:' && !addrs.every((a) => isLoopbackAddress(a.address))) {
    return fail('HTTPS_REQUIRED', 'https is required for an endpoint that is not on loopback');
  }
  return { ok: true, address: first.address, family: first.family === 6 ? 6 : 4 };
}

/**
 * POSTs `body` to `url` with `headers` safely (see the module header). Never throws.
 */
export async function deliver(
  url: string,
  headers: Record<string, string>,
  body: string,
  opts: DeliveryOptions = {},
): Promise<DeliveryResult> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return fail('BAD_URL', 'not a valid URL');
  }
  const target = await resolveTarget(u, opts);
  if (!target.ok) return target;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxBytes = opts.maxResponseBytes ?? 64 * 1024;
  // Connect to the checked address whatever the host name resolves to now.
  const pinned: LookupFunction = (_host, o, cb) => {
    if (o.all)
      (cb as (e: null, a: { address: string; family: number }[]) => void)(null, [
        { address: target.address, family: target.family },
      ]);
    else cb(null, target.address, target.family);
  };
  const isHttps = u.protocol === 'https:';
  const reqOpts = {
    method: 'POST',
    headers: {
      ...headers,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'user-agent': 'Latchkey-Webhooks/1',
    },
    lookup: pinned,
    agent: false as const,
    ...(isHttps
      ? {
          rejectUnauthorized: true,
          ...(opts.ca === undefined ? {} : { ca: withDefaultCas(opts.ca) }),
        }
      : {}),
  };
  return new Promise<DeliveryResult>((resolve) => {
    let done = false;
    const finish = (r: DeliveryResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const onResponse = (res: IncomingMessage): void => {
      const status = res.statusCode ?? 0;
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) end();
      });
      const end = (): void => {
        if (status >= 200 && status < 300) finish({ ok: true, status });
        else if (status >= 300 && status < 400)
          finish(fail('REDIRECT', `redirect ${status} not followed`, status));
        else finish(fail('HTTP_STATUS', `endpoint answered ${status}`, status));
      };
      res.on('end', end);
      res.on('error', end);
    };
    const req = (isHttps ? httpsRequest : httpRequest)(u, reqOpts, onResponse);
    const timer = setTimeout(
      () => finish(fail('TIMEOUT', `no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('error', (err) => finish(classifyError(err)));
    req.end(body);
  });
}

/** Extra CAs add to Node's bundled roots rather than replace them. */
function withDefaultCas(ca: string | Buffer | (string | Buffer)[]): (string | Buffer)[] {
  return [...rootCertificates, ...(Array.isArray(ca) ? ca : [ca])];
}
