/**
 * Attachments throughput (issue 18): one file of `mb` MB uploaded and downloaded through the
 * relay by @latchkey/client (encrypting and decrypting in the client, servers/files-stack.ts and
 * files/client.ts, each a child process of its own), against `curl` moving the same bytes to and
 * from a plain static server on the same machine. Medians over `repeats`; the client's peak
 * memory shows whether the file ever sat whole in memory.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Child } from './ipc.ts';

const run = promisify(execFile);
const src = (m: string): string => fileURLToPath(new URL(m, import.meta.url));

export interface FilesResult {
  file_mb: number;
  files_upload_mb_per_s: number;
  files_download_mb_per_s: number;
  curl_upload_mb_per_s: number;
  curl_download_mb_per_s: number;
  files_upload_vs_curl: number;
  files_download_vs_curl: number;
  /** The client process's peak RSS and largest sampled ArrayBuffer total (bytes). */
  files_client_peak_rss_bytes: number;
  files_client_peak_array_buffers_bytes: number;
  repeats: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Seconds curl took for one transfer (its own `time_total`). */
async function curl(args: string[]): Promise<number> {
  const { stdout } = await run('curl', ['-sS', '--fail', '-w', '%{time_total}', ...args]);
  return Number(stdout.trim());
}

/**
 * Runs `repeats` round trips of an `mb` MB file of random bytes each way.
 * @throws Error when a child fails or curl is missing.
 */
export async function filesBench(opts: { mb: number; repeats: number }): Promise<FilesResult> {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-file-'));
  const path = join(dir, 'file.bin');
  const size = opts.mb * 1_000_000;
  writeFileSync(path, randomBytes(size));
  const secretHex = randomBytes(32).toString('hex');
  const prof = process.env['BENCH_CPU_PROF'];
  const execArgv = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const stack = new Child('files-stack', src('servers/files-stack.ts'), { secretHex }, execArgv);
  let client: Child | undefined;
  try {
    const urls = (await stack.hello) as { relayUrl: string; keysUrl: string; staticUrl: string };
    client = new Child('files-client', src('files/client.ts'), { secretHex, ...urls }, execArgv);
    await client.hello;
    const ours: {
      size: number;
      uploadMs: number;
      downloadMs: number;
      peakArrayBuffers: number;
      maxRssBytes: number;
    }[] = [];
    const up: number[] = [];
    const down: number[] = [];
    for (let i = 0; i < opts.repeats; i++) {
      ours.push((await client.call('roundTrip', { path })) as (typeof ours)[number]);
      up.push(await curl(['-T', path, urls.staticUrl, '-o', '/dev/null']));
      down.push(await curl([urls.staticUrl, '-o', '/dev/null']));
    }
    const mbps = (ms: number): number => size / 1e6 / (ms / 1000);
    const oursUp = median(ours.map((o) => mbps(o.uploadMs)));
    const oursDown = median(ours.map((o) => mbps(o.downloadMs)));
    const curlUp = median(up.map((s) => mbps(s * 1000)));
    const curlDown = median(down.map((s) => mbps(s * 1000)));
    const r2 = (x: number): number => Math.round(x * 100) / 100;
    return {
      file_mb: opts.mb,
      files_upload_mb_per_s: r2(oursUp),
      files_download_mb_per_s: r2(oursDown),
      curl_upload_mb_per_s: r2(curlUp),
      curl_download_mb_per_s: r2(curlDown),
      files_upload_vs_curl: r2(oursUp / curlUp),
      files_download_vs_curl: r2(oursDown / curlDown),
      files_client_peak_rss_bytes: Math.max(...ours.map((o) => o.maxRssBytes)),
      files_client_peak_array_buffers_bytes: Math.max(...ours.map((o) => o.peakArrayBuffers)),
      repeats: opts.repeats,
    };
  } finally {
    await client?.stop();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
