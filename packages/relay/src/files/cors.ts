/**
 * CORS for the file API (docs/protocol.md "Files (HTTP)"): a page on another origin (the chat
 * widget) calls the relay's HTTP API with `fetch`. Preflights are answered for the file routes;
 * every answer of them carries `access-control-allow-origin` for an allowed origin: the relay's
 * origin allowlist when one is configured (the same list that admits WebSocket handshakes,
 * admission.ts), else any origin, which is safe because the API uses no cookies (a bearer token
 * or a capability in the URL) and never `allow-credentials`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export const CORS_ALLOW_HEADERS = 'authorization, content-type, upload-offset, range';
export const CORS_ALLOW_METHODS = 'GET, POST, PATCH, OPTIONS';
export const CORS_EXPOSE_HEADERS = 'upload-offset, content-range, content-length, accept-ranges';

function normalise(origin: string): string | undefined {
  try {
    const o = new URL(origin).origin;
    return o === 'null' ? undefined : o;
  } catch {
    return undefined;
  }
}

export class Cors {
  readonly #allowed: ReadonlySet<string> | undefined;

  /** `allowedOrigins` undefined: any origin. */
  constructor(allowedOrigins: readonly string[] | undefined) {
    this.#allowed = allowedOrigins
      ? new Set(allowedOrigins.flatMap((o) => normalise(o) ?? []))
      : undefined;
  }

  /** The value of `access-control-allow-origin` for this request, or undefined (none sent). */
  allowOrigin(req: IncomingMessage): string | undefined {
    const origin = req.headers.origin;
    if (typeof origin !== 'string' || origin.length > 2048) return undefined;
    if (!this.#allowed) return '*';
    const o = normalise(origin);
    return o !== undefined && this.#allowed.has(o) ? o : undefined;
  }

  /** Sets the CORS headers of an actual (not preflight) answer. */
  apply(req: IncomingMessage, res: ServerResponse): void {
    const allow = this.allowOrigin(req);
    if (allow === undefined) return;
    res.setHeader('access-control-allow-origin', allow);
    res.setHeader('access-control-expose-headers', CORS_EXPOSE_HEADERS);
    if (allow !== '*') res.setHeader('vary', 'origin');
  }

  /** Answers a preflight (OPTIONS): 204, with the allowances for an allowed origin only. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    const allow = this.allowOrigin(req);
    const headers: Record<string, string> = { 'content-length': '0', vary: 'origin' };
    if (allow !== undefined) {
      headers['access-control-allow-origin'] = allow;
      headers['access-control-allow-methods'] = CORS_ALLOW_METHODS;
      headers['access-control-allow-headers'] = CORS_ALLOW_HEADERS;
      headers['access-control-max-age'] = '600';
    }
    res.writeHead(204, headers);
    res.end();
  }
}
