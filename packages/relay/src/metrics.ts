/**
 * Relay metrics in the Prometheus text exposition format (version 0.0.4), served on `/metrics`,
 * and the `/healthz` / `/readyz` probes (docs/operations.md "Health, readiness, metrics").
 * Counts and timings only: no contact or participant id ever becomes a label.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ipAllowed, parseIpAllowlist } from '@latchkey/tokens';
import { clientIp } from './admission.ts';

/** Seconds; commit latency and fan-out lag share them. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram {
  readonly counts = new Array<number>(BUCKETS.length).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    const v = Math.max(0, seconds);
    this.sum += v;
    this.count++;
    const i = BUCKETS.findIndex((b) => v <= b);
    if (i >= 0) this.counts[i] = (this.counts[i] ?? 0) + 1;
  }

  render(name: string, help: string): string {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    let cumulative = 0;
    BUCKETS.forEach((b, i) => {
      cumulative += this.counts[i] ?? 0;
      lines.push(`${name}_bucket{le="${b}"} ${cumulative}`);
    });
    lines.push(
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    );
    return lines.join('\n');
  }
}

/** What the relay counts. */
export class RelayMetrics {
  /** Envelopes newly stored through this relay (duplicates not counted). */
  messages = 0;
  /** Store transactions (group commits) and their latency. */
  readonly commit = new Histogram();
  /** Time from publish (other relay's clock) to receipt here. */
  readonly fanoutLag = new Histogram();
  /** Envelopes read back from the store to fill a gap the fan-out left. */
  gapRepairs = 0;
  fanoutPublishFailures = 0;
  /** File ciphertext bytes written to the blob store (recorded offsets). */
  fileBytesUploaded = 0;
  /** File ciphertext bytes sent to link holders. */
  fileBytesDownloaded = 0;
  /** Uploads completed. */
  filesStored = 0;

  render(connections: number): string {
    return [
      '# HELP latchkey_relay_connections Open WebSocket connections.',
      '# TYPE latchkey_relay_connections gauge',
      `latchkey_relay_connections ${connections}`,
      '# HELP latchkey_relay_messages_total Envelopes stored through this relay (rate() gives messages/s).',
      '# TYPE latchkey_relay_messages_total counter',
      `latchkey_relay_messages_total ${this.messages}`,
      this.commit.render(
        'latchkey_relay_commit_seconds',
        'Store transaction (group commit) latency.',
      ),
      this.fanoutLag.render(
        'latchkey_relay_fanout_lag_seconds',
        'Publish-to-receipt delay of fanned-out envelopes.',
      ),
      '# HELP latchkey_relay_fanout_gap_repairs_total Envelopes read from the store to fill fan-out gaps.',
      '# TYPE latchkey_relay_fanout_gap_repairs_total counter',
      `latchkey_relay_fanout_gap_repairs_total ${this.gapRepairs}`,
      '# HELP latchkey_relay_fanout_publish_failures_total Publishes the fan-out refused.',
      '# TYPE latchkey_relay_fanout_publish_failures_total counter',
      `latchkey_relay_fanout_publish_failures_total ${this.fanoutPublishFailures}`,
      '# HELP latchkey_relay_file_bytes_uploaded_total File ciphertext bytes stored through this relay.',
      '# TYPE latchkey_relay_file_bytes_uploaded_total counter',
      `latchkey_relay_file_bytes_uploaded_total ${this.fileBytesUploaded}`,
      '# HELP latchkey_relay_file_bytes_downloaded_total File ciphertext bytes served to link holders.',
      '# TYPE latchkey_relay_file_bytes_downloaded_total counter',
      `latchkey_relay_file_bytes_downloaded_total ${this.fileBytesDownloaded}`,
      '# HELP latchkey_relay_files_stored_total Uploads completed through this relay.',
      '# TYPE latchkey_relay_files_stored_total counter',
      `latchkey_relay_files_stored_total ${this.filesStored}`,
      '',
    ].join('\n');
  }
}

export interface OpsEndpointsOptions {
  metrics: RelayMetrics;
  connections: () => number;
  /** Store and fan-out reachable. */
  ready: () => Promise<boolean>;
  /** False once the relay is closing (both probes then fail). */
  live: () => boolean;
  /** Who may read `/metrics` (default loopback only); the probes answer everyone. */
  metricsIpAllowlist?: readonly string[];
}

/** Routes `/healthz`, `/readyz` and `/metrics`; returns false for any other path. */
export function createOpsEndpoints(
  o: OpsEndpointsOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const allow = parseIpAllowlist(o.metricsIpAllowlist ?? ['127.0.0.0/8', '::1']);
  const text = (
    res: ServerResponse,
    status: number,
    body: string,
    type = 'text/plain; charset=utf-8',
  ): void => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    switch (path) {
      case '/healthz':
        text(res, o.live() ? 200 : 503, o.live() ? 'ok\n' : 'closing\n');
        return true;
      case '/readyz':
        void (async () => {
          const ok = o.live() && (await o.ready().catch(() => false));
          text(res, ok ? 200 : 503, ok ? 'ready\n' : 'not ready\n');
        })();
        return true;
      case '/metrics':
        if (!ipAllowed(allow, clientIp(req))) {
          text(res, 403, 'forbidden\n');
          return true;
        }
        text(
          res,
          200,
          o.metrics.render(o.connections()),
          'text/plain; version=0.0.4; charset=utf-8',
        );
        return true;
      default:
        return false;
    }
  };
}
