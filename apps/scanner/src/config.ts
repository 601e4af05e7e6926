/**
 * Scanner process configuration from flags and environment (flags win), validated with zod
 * before anything starts; errors name the setting, never its value.
 *   --host H              | LATCHKEY_SCANNER_HOST          (default 127.0.0.1)
 *   --port N              | LATCHKEY_SCANNER_PORT          (default 8473; 0 picks a free port)
 *   --path P              | LATCHKEY_SCANNER_PATH          (default /webhooks)
 *   --relay URL           | LATCHKEY_RELAY_URL             (default ws://127.0.0.1:8470)
 *   --keys URL            | LATCHKEY_KEYS_URL              (default http://127.0.0.1:8471)
 *   --clamd ADDR          | LATCHKEY_CLAMD                 (unix:/path or tcp://host:port;
 *                                                           default Debian's /run/clamav/clamd.ctl)
 *   --stream-max-length N | LATCHKEY_CLAMD_STREAM_MAX      (clamd.conf StreamMaxLength, bytes;
 *                                                           default 25 MiB, clamd's default)
 *   --max-file-bytes N    | LATCHKEY_SCANNER_MAX_FILE_BYTES (default the stream limit; larger
 *                                                           files get the verdict `error`)
 *   --concurrency N       | LATCHKEY_SCANNER_CONCURRENCY   (default 2)
 *   --idle-timeout T      | LATCHKEY_SCANNER_IDLE_TIMEOUT  (default 60s)
 *   --retries N           | LATCHKEY_SCANNER_RETRIES       (default 5)
 *   --token-ttl T         | LATCHKEY_SCANNER_TOKEN_TTL     (default 1h, at most 24h)
 *   --participant ID      | LATCHKEY_SCANNER_PARTICIPANT   (default scanner)
 *   --service-key B64URL  | LATCHKEY_SERVICE_KEY           (the key service's public key, pinned)
 *   --webhook-secret-file FILE | LATCHKEY_SCANNER_WEBHOOK_SECRET (whsec_..., one per line or
 *                                comma-separated, two while rotating)
 *   --data DIR            | LATCHKEY_DATA_DIR              (default ./.latchkey)
 *   --token-signing-key FILE | LATCHKEY_TOKEN_SIGNING_KEY_FILE (EdDSA deployments: the backend's
 *                              Ed25519 private key, PKCS#8 PEM or JWK, mints the scanner's tokens)
 *   else LATCHKEY_API_SECRET (base64url of at least 32 bytes, or 64 hex characters), else the
 *   file `<data>/api-secret` (raw bytes, as `latchkey start` writes it).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Id } from '@latchkey/protocol';
import { importTokenSigningKey, type TokenSigningKey } from '@latchkey/tokens';
import { parseClamdAddress, CLAMD_DEFAULT_STREAM_MAX, type ClamdAddress } from './clamd.ts';

export const DEFAULT_SCANNER_PORT = 8473;
/** Debian's clamav-daemon LocalSocket. */
export const DEFAULT_CLAMD = 'unix:/run/clamav/clamd.ctl';

/** A configuration mistake: the message names the setting and what it must be. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface ScannerConfig {
  host: string;
  port: number;
  path: string;
  relayUrl: string;
  keysUrl: string;
  clamd: ClamdAddress;
  streamMaxLength: number;
  maxFileBytes: number;
  concurrency: number;
  idleTimeoutMs: number;
  retries: number;
  tokenTtlSeconds: number;
  participantId: string;
  serviceKey: string | undefined;
  webhookSecrets: string[];
  /** What mints the scanner's tokens: the API secret (HS256) or an Ed25519 private key. */
  tokenKey: TokenSigningKey;
}

const FLAGS = {
  host: 'LATCHKEY_SCANNER_HOST',
  port: 'LATCHKEY_SCANNER_PORT',
  path: 'LATCHKEY_SCANNER_PATH',
  relay: 'LATCHKEY_RELAY_URL',
  keys: 'LATCHKEY_KEYS_URL',
  clamd: 'LATCHKEY_CLAMD',
  'stream-max-length': 'LATCHKEY_CLAMD_STREAM_MAX',
  'max-file-bytes': 'LATCHKEY_SCANNER_MAX_FILE_BYTES',
  concurrency: 'LATCHKEY_SCANNER_CONCURRENCY',
  'idle-timeout': 'LATCHKEY_SCANNER_IDLE_TIMEOUT',
  retries: 'LATCHKEY_SCANNER_RETRIES',
  'token-ttl': 'LATCHKEY_SCANNER_TOKEN_TTL',
  participant: 'LATCHKEY_SCANNER_PARTICIPANT',
  'service-key': 'LATCHKEY_SERVICE_KEY',
  data: 'LATCHKEY_DATA_DIR',
} as const;
type Flag = keyof typeof FLAGS;

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,15}$/, 'must be a whole number')
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be ${min}..${max}`);

/** `600`, `600s`, `30m`, `1h`, `1d` as seconds. */
const duration = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,9}[smhd]?$/, 'must be a duration like 600, 600s, 30m, 1h')
    .transform((t) => {
      const unit = { s: 1, m: 60, h: 3600, d: 86400 }[t.at(-1) as string] ?? 1;
      return Number(/\d$/.test(t) ? t : t.slice(0, -1)) * unit;
    })
    .refine((n) => n >= min && n <= max, `must be ${min}..${max} seconds`);

const httpUrl = (schemes: readonly string[]) =>
  z.string().refine(
    (t) => {
      try {
        const u = new URL(t);
        return schemes.includes(u.protocol) && u.hostname !== '';
      } catch {
        return false;
      }
    },
    `must be a ${schemes.map((s) => `${s}//`).join(' or ')} URL`,
  );

const Settings = z.object({
  host: z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/, 'must be an IP address or host name'),
  port: int(0, 65535),
  path: z.string().regex(/^\/[A-Za-z0-9._~/-]{0,200}$/, 'must be a URL path'),
  relay: httpUrl(['ws:', 'wss:']),
  keys: httpUrl(['http:', 'https:']),
  clamd: z.string().transform((t, ctx) => {
    try {
      return parseClamdAddress(t);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  }),
  'stream-max-length': int(1024, 4 * 1024 * 1024 * 1024 - 1),
  'max-file-bytes': int(0, Number.MAX_SAFE_INTEGER).optional(),
  concurrency: int(1, 64),
  'idle-timeout': duration(1, 86400),
  retries: int(0, 100),
  'token-ttl': duration(60, 86400),
  participant: Id,
  'service-key': z
    .string()
    .regex(/^[A-Za-z0-9_-]{43}$/, 'must be the 32-byte key as base64url')
    .optional(),
});

const WebhookSecret = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/]{22,}={0,2}$/, 'must be a whsec_... secret');

/**
 * Decodes the API secret text: 64 hex characters, or canonical base64url of 32..1024 bytes.
 * @throws ConfigError on anything else.
 */
function decodeApiSecret(text: string): Uint8Array {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Uint8Array.from(Buffer.from(t, 'hex'));
  const bytes = Buffer.from(t, 'base64url');
  if (/^[A-Za-z0-9_-]+$/.test(t) && bytes.toString('base64url') === t && bytes.length >= 32) {
    if (bytes.length <= 1024) return Uint8Array.from(bytes);
  }
  throw new ConfigError(
    'LATCHKEY_API_SECRET must be at least 32 bytes as base64url, or 64 hex characters',
  );
}

/**
 * Reads flags (`argv` without node and script) and environment into a checked configuration.
 * @throws ConfigError naming the first setting that is wrong or missing.
 */
export async function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<ScannerConfig> {
  let values: Record<string, string | undefined>;
  try {
    const options = Object.fromEntries(
      [...Object.keys(FLAGS), 'webhook-secret-file', 'token-signing-key'].map((f) => [
        f,
        { type: 'string' as const },
      ]),
    );
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false })
      .values as Record<string, string | undefined>;
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const pick = (f: Flag): string | undefined => values[f] ?? (env[FLAGS[f]] || undefined);
  const raw = {
    host: pick('host') ?? '127.0.0.1',
    port: pick('port') ?? String(DEFAULT_SCANNER_PORT),
    path: pick('path') ?? '/webhooks',
    relay: pick('relay') ?? 'ws://127.0.0.1:8470',
    keys: pick('keys') ?? 'http://127.0.0.1:8471',
    clamd: pick('clamd') ?? DEFAULT_CLAMD,
    'stream-max-length': pick('stream-max-length') ?? String(CLAMD_DEFAULT_STREAM_MAX),
    'max-file-bytes': pick('max-file-bytes'),
    concurrency: pick('concurrency') ?? '2',
    'idle-timeout': pick('idle-timeout') ?? '60s',
    retries: pick('retries') ?? '5',
    'token-ttl': pick('token-ttl') ?? '1h',
    participant: pick('participant') ?? 'scanner',
    'service-key': pick('service-key'),
  };
  const parsed = Settings.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const flag = String(issue?.path[0] ?? '');
    const name = values[flag] !== undefined ? `--${flag}` : (FLAGS[flag as Flag] ?? flag);
    throw new ConfigError(`${name} ${issue?.message ?? 'is invalid'}`);
  }
  const s = parsed.data;

  const secretFile = values['webhook-secret-file'];
  let secretText = env.LATCHKEY_SCANNER_WEBHOOK_SECRET;
  if (secretFile !== undefined) {
    secretText = await readFile(secretFile, 'utf8').catch(() => {
      throw new ConfigError('--webhook-secret-file cannot be read');
    });
  }
  const secretName =
    secretFile !== undefined ? '--webhook-secret-file' : 'LATCHKEY_SCANNER_WEBHOOK_SECRET';
  const secrets = (secretText ?? '').split(/[\s,]+/).filter((x) => x !== '');
  if (secrets.length === 0 || secrets.length > 2)
    throw new ConfigError(`${secretName} must hold one or two whsec_... secrets`);
  for (const x of secrets) {
    if (!WebhookSecret.safeParse(x).success)
      throw new ConfigError(`${secretName} must hold whsec_... secrets`);
  }

  let tokenKey: TokenSigningKey;
  const keyFile = values['token-signing-key'] ?? (env.LATCHKEY_TOKEN_SIGNING_KEY_FILE || undefined);
  if (keyFile !== undefined) {
    const name =
      values['token-signing-key'] !== undefined
        ? '--token-signing-key'
        : 'LATCHKEY_TOKEN_SIGNING_KEY_FILE';
    const text = await readFile(keyFile, 'utf8').catch(() => {
      throw new ConfigError(`${name} cannot be read`);
    });
    try {
      const t = text.trim();
      tokenKey = importTokenSigningKey(
        t.startsWith('{') ? (JSON.parse(t) as Record<string, unknown>) : t,
      );
    } catch {
      throw new ConfigError(`${name} must hold an Ed25519 private key (PKCS#8 PEM or JWK)`);
    }
  } else if (env.LATCHKEY_API_SECRET) tokenKey = decodeApiSecret(env.LATCHKEY_API_SECRET);
  else {
    const dir = resolve(pick('data') ?? '.latchkey');
    const bytes = await readFile(join(dir, 'api-secret')).catch(() => {
      throw new ConfigError('LATCHKEY_API_SECRET is not set and <data>/api-secret cannot be read');
    });
    if (bytes.length < 32) throw new ConfigError('<data>/api-secret must hold at least 32 bytes');
    tokenKey = Uint8Array.from(bytes);
  }

  const maxFileBytes = Math.min(
    s['max-file-bytes'] ?? s['stream-max-length'],
    s['stream-max-length'],
  );
  return {
    host: s.host,
    port: s.port,
    path: s.path,
    relayUrl: s.relay,
    keysUrl: s.keys,
    clamd: s.clamd,
    streamMaxLength: s['stream-max-length'],
    maxFileBytes,
    concurrency: s.concurrency,
    idleTimeoutMs: s['idle-timeout'] * 1000,
    retries: s.retries,
    tokenTtlSeconds: s['token-ttl'],
    participantId: s.participant,
    serviceKey: s['service-key'],
    webhookSecrets: secrets,
    tokenKey,
  };
}
