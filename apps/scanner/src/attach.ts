/**
 * A scanner that registers itself with the relay it serves, through the relay's admin API
 * (docs/admin-api.md, docs/webhooks.md): what `latchkey start --scanner` needs, where one
 * process holds both the admin key and the scanner. Its endpoint is found by its description;
 * on a restart at the same URL the endpoint's secret is rotated (no overlap: the old one is gone
 * with the process that held it), at another URL the old endpoint is removed and a new one added.
 * The secret never leaves this process.
 */
import {
  ListWebhooksResponse,
  WEBHOOK_PATHS,
  WebhookSecretResponse,
  type AddWebhookRequest,
} from '@latchkey/protocol';
import { SCANNER_EVENTS, startScanner, type Scanner, type ScannerOptions } from './scanner.ts';

/** The description that marks the endpoint a self-registered scanner owns. */
export const ATTACHED_DESCRIPTION = 'latchkey scanner (self-registered)';

export interface RelayAdmin {
  /** The relay's HTTP origin (`http://host:port`; its `ws://` URL works too). */
  url: string;
  /** The admin API's `authorization` header value (`adminAuthorization(deriveAdminKey(secret))`). */
  authorization: string;
}

async function call(
  admin: RelayAdmin,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const origin = admin.url.replace(/^ws(s?):/, 'http$1:').replace(/\/+$/, '');
  const res = await fetch(`${origin}${path}`, {
    method,
    headers: {
      authorization: admin.authorization,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`relay admin API ${method} answered ${res.status}`);
  return res.status === 204 ? null : ((await res.json()) as unknown);
}

/**
 * Makes sure the relay has one webhook endpoint for `scanner.url`, with the events the scanner
 * needs and a secret only the scanner holds, and gives the scanner that secret.
 * @throws Error naming the admin call that failed (the relay unreachable, a wrong admin key).
 */
export async function registerWithRelay(scanner: Scanner, admin: RelayAdmin): Promise<void> {
  const list = ListWebhooksResponse.parse(await call(admin, 'GET', WEBHOOK_PATHS.endpoints));
  const mine = list.endpoints.filter((e) => e.description === ATTACHED_DESCRIPTION);
  const same = mine.find((e) => e.url === scanner.url);
  for (const e of mine) {
    if (e !== same) await call(admin, 'DELETE', WEBHOOK_PATHS.endpoint(e.id));
  }
  let answer: unknown;
  if (same) {
    answer = await call(admin, 'POST', WEBHOOK_PATHS.rotateSecret(same.id), { overlapSeconds: 0 });
  } else {
    const add: AddWebhookRequest = {
      url: scanner.url,
      events: [...SCANNER_EVENTS],
      description: ATTACHED_DESCRIPTION,
    };
    answer = await call(admin, 'POST', WEBHOOK_PATHS.endpoints, add);
  }
  scanner.setWebhookSecrets([WebhookSecretResponse.parse(answer).secret]);
}

/**
 * Starts a scanner and registers it with the relay (`registerWithRelay`); the relay must allow
 * webhooks to the scanner's address (its webhook allowlist, e.g. `127.0.0.1`).
 * @throws as `startScanner` and `registerWithRelay` (the scanner is closed again then).
 */
export async function startAttachedScanner(
  opts: Omit<ScannerOptions, 'webhookSecrets'> & { relayAdmin: RelayAdmin },
): Promise<Scanner> {
  const { relayAdmin, ...rest } = opts;
  const scanner = await startScanner({ ...rest, webhookSecrets: [] });
  try {
    await registerWithRelay(scanner, relayAdmin);
  } catch (err) {
    await scanner.close();
    throw err;
  }
  return scanner;
}
