/**
 * The checks `deliver` makes before it connects (deliver.ts: special addresses against the
 * allowlist, https off loopback, DNS), run for one URL when an endpoint is added, so that a
 * refused URL is seen at once (docs/webhooks.md "Checked when added").
 */
import type { WebhookUrlWarning } from '@latchkey/protocol';
import { resolveTarget, type DeliveryOptions } from './deliver.ts';

/** How long the check waits for DNS. */
const CHECK_URL_TIMEOUT_MS = 5_000;

/** Null when a call to `url` would go out now, else why not. Never throws. */
export async function checkTarget(
  url: string,
  delivery: DeliveryOptions,
): Promise<WebhookUrlWarning | null> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { code: 'BAD_URL', message: 'not a valid URL' };
  }
  let timer: NodeJS.Timeout | undefined;
  // A resolver that hangs must not hold the admin call: the answer then is "did not resolve".
  const timeout = new Promise<WebhookUrlWarning>((resolve) => {
    timer = setTimeout(
      () => resolve({ code: 'DNS_FAILED', message: `${u.hostname} did not resolve in time` }),
      CHECK_URL_TIMEOUT_MS,
    );
    timer.unref();
  });
  const r = await Promise.race([
    resolveTarget(u, delivery).catch((err: unknown): WebhookUrlWarning => ({
      code: 'DNS_FAILED',
      message: (err instanceof Error ? err.message : 'lookup failed').slice(0, 300),
    })),
    timeout,
  ]).finally(() => clearTimeout(timer));
  if ('ok' in r && r.ok) return null;
  return { code: r.code, message: r.message };
}
