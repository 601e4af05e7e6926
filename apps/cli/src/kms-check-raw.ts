/**
 * The raw client of `latchkey kms check` (kms-check.ts): one request outside the adapters of
 * @latchkey/keys, for the error cases, signed (or not, or wrongly) by the adapters' own
 * `signKmRequest`, over node:http(s) with the adapters' TLS options.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { KmErrorResponse, signKmRequest } from '@latchkey/keys';
import type { ErrorCode } from '@latchkey/protocol';
import { expect, type KmsCheckSettings } from './_kms-check.ts';

/** One request outside the adapters, for the error cases, signed by the adapters' signer. */
export interface RawRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: string;
  /** Default: signed now by the configured client. */
  sign?:
    { clientId?: string; secret?: Uint8Array; now?: number; path?: string; body?: string } | 'none';
  /** Headers to send as they are (a replay). */
  headers?: Record<string, string>;
}

/** The status, the parsed body (or `{ notJson }`) and the headers that were sent. */
export interface RawAnswer {
  status: number;
  json: unknown;
  headers: Record<string, string>;
}

/** Sends requests to the key manager of the settings, signed as the check asks. */
export class Raw {
  readonly #base: URL;
  readonly #s: KmsCheckSettings;

  constructor(s: KmsCheckSettings) {
    this.#base = new URL(s.url);
    this.#s = s;
  }

  /** The path as sent, with the base path of the URL, as the adapters' client sends it. */
  full(path: string): string {
    return `${this.#base.pathname.replace(/\/$/, '')}${path}`;
  }

  headersFor(r: RawRequest): Record<string, string> {
    if (r.headers !== undefined) return r.headers;
    if (r.sign === 'none') return {};
    const sign = r.sign ?? {};
    return signKmRequest(
      {
        method: r.method,
        path: this.full(sign.path ?? r.path),
        body: Buffer.from(sign.body ?? r.body ?? '', 'utf8'),
      },
      { clientId: sign.clientId ?? this.#s.clientId, secret: sign.secret ?? this.#s.secret },
      sign.now ?? Date.now(),
    );
  }

  /** Over node:http(s) with the same TLS options as the adapters' client (mutual TLS too). */
  async send(r: RawRequest): Promise<RawAnswer> {
    const headers = this.headersFor(r);
    const url = new URL(this.full(r.path), this.#base);
    const body = Buffer.from(r.body ?? '', 'utf8');
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const req = (url.protocol === 'https:' ? https : http).request(
          url,
          {
            method: r.method,
            headers: {
              ...headers,
              accept: 'application/json',
              ...(r.body === undefined ? {} : { 'content-type': 'application/json' }),
              'content-length': String(body.length),
            },
            timeout: this.#s.timeoutMs ?? 2000,
            ...(this.#s.tls ?? {}),
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                text: Buffer.concat(chunks).toString('utf8'),
              }),
            );
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end(body);
      },
    );
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = { notJson: text.slice(0, 80) };
    }
    return { status, json, headers };
  }

  /** Sends and expects an error answer with `status` and one of `codes` in the documented shape. */
  async refused(r: RawRequest, status: number, codes: readonly ErrorCode[]): Promise<void> {
    const a = await this.send(r);
    const err = KmErrorResponse.safeParse(a.json);
    const code = err.success ? err.data.error.code : undefined;
    expect(
      a.status === status && code !== undefined && (codes as readonly string[]).includes(code),
      `want ${status} ${codes.join('|')}, got ${a.status} ${
        code ??
        `with a body that is not {"error":{"code","message"}}: ${JSON.stringify(a.json)?.slice(0, 120)}`
      }`,
    );
  }
}
