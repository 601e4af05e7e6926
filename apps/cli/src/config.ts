/**
 * Where the CLI finds its data directory, the dev API secret and the endpoints of a running
 * `latchkey start`. Precedence: flags, then environment, then files in the data directory.
 */
import { readFile, writeFile, rename } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { fromBase64Url } from '@latchkey/crypto/codec';
import { loadOrCreateSecretFile } from '@latchkey/keys';
import { UsageError } from './usage.ts';

export const DEFAULT_DATA_DIR = './.latchkey';
export const DEFAULT_PORT = 8470;

export function dataDir(flag: string | undefined): string {
  return resolve(flag ?? process.env.LATCHKEY_DATA_DIR ?? DEFAULT_DATA_DIR);
}

/** Parses a 32-byte secret given as base64url or 64 hex characters. */
export function parseSecret(text: string, name: string): Uint8Array {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Uint8Array.from(Buffer.from(t, 'hex'));
  try {
    const bytes = fromBase64Url(t);
    if (bytes.length >= 32) return bytes;
  } catch {
    // fall through
  }
  throw new UsageError(`${name} must be at least 32 bytes as base64url, or 64 hex characters`);
}

/** The API secret that signs participant tokens: LATCHKEY_API_SECRET or `<data>/api-secret`. */
export async function apiSecret(dir: string): Promise<Uint8Array> {
  const env = process.env.LATCHKEY_API_SECRET;
  if (env) return parseSecret(env, 'LATCHKEY_API_SECRET');
  return loadOrCreateSecretFile(join(dir, 'api-secret'));
}

export interface Endpoints {
  relay: string;
  keys: string;
  web?: string;
}

export async function writeEndpoints(dir: string, endpoints: Endpoints): Promise<void> {
  const file = join(dir, 'endpoints.json');
  await writeFile(`${file}.tmp`, `${JSON.stringify(endpoints)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

/** Relay and key-service URLs from flags, env, or the endpoints file of `latchkey start`. */
export async function endpoints(
  flags: { relay?: string | undefined; keys?: string | undefined },
  dir: string,
): Promise<Endpoints> {
  let relay = flags.relay ?? process.env.LATCHKEY_RELAY_URL;
  let keys = flags.keys ?? process.env.LATCHKEY_KEYS_URL;
  if (!relay || !keys) {
    try {
      const saved = JSON.parse(
        await readFile(join(dir, 'endpoints.json'), 'utf8'),
      ) as Partial<Endpoints>;
      relay ??= saved.relay;
      keys ??= saved.keys;
    } catch {
      // no running `latchkey start` in this data directory
    }
  }
  if (!relay || !keys) {
    throw new UsageError(
      'no relay/key service URL: pass --relay and --keys, or run `latchkey start` first',
    );
  }
  for (const [name, url, schemes] of [
    ['--relay', relay, ['ws:', 'wss:']],
    ['--keys', keys, ['http:', 'https:']],
  ] as const) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UsageError(`${name} is not a URL`);
    }
    if (!(schemes as readonly string[]).includes(parsed.protocol)) {
      throw new UsageError(`${name} must use ${schemes.join(' or ')}`);
    }
  }
  return { relay, keys };
}

/** Parses a lifetime such as 90, 90s, 30m, 1h, 1d into seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d{1,7})([smhd]?)$/.exec(text.trim());
  if (!m) throw new UsageError('--ttl must look like 600, 600s, 30m, 1h or 1d');
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
