/**
 * `latchkey keys audit --verify-stream FILE [--log-key FILE] [--after SEQ:HASH|first]
 * [--head SEQ:HASH]`: checks the key access records a SIEM received (docs/siem.md "Verifying the
 * chain"). FILE holds one record per line: a webhook body (`{"type":"key.accessed",...}`) or its
 * `data`, or an RFC 5424 message of ours (optionally with its octet count in front); other lines
 * (other programs' messages, other webhook events) are skipped. Prints `verified: N records
 * (hashes recomputed|links only), D duplicates, head SEQ:HASH`, or exit 1 with `error: TAMPERED
 * access stream broken at record N: REASON`.
 */
import { readFileSync } from 'node:fs';
import {
  accessRecordFromWebhook,
  parseAccessSyslog,
  readPrivateFile,
  verifyAccessStream,
  type AccessLogHead,
  type ReceivedAccessRecord,
} from '@latchkey/keys';
import { EXIT, UsageError } from './usage.ts';

export interface VerifyStreamFlags {
  'verify-stream'?: string | undefined;
  /** The log key (keys/access-log.key, 32 raw bytes, 0600): hashes are recomputed with it. */
  'log-key'?: string | undefined;
  after?: string | undefined;
  head?: string | undefined;
}

function position(text: string, flag: string): AccessLogHead {
  const m = /^(\d{1,15}):([0-9a-f]{64})$/.exec(text);
  if (!m?.[1] || !m[2]) throw new UsageError(`${flag} must be SEQ:HASH`);
  return { seq: Number(m[1]), hash: m[2] };
}

/** One line as a record, or undefined when it is none of ours. */
function recordOf(line: string): ReceivedAccessRecord | undefined {
  const t = line.trim();
  if (t.startsWith('{')) {
    try {
      return accessRecordFromWebhook(JSON.parse(t));
    } catch {
      return undefined;
    }
  }
  return parseAccessSyslog(t.replace(/^\d{1,10} (?=<)/, ''));
}

/**
 * @throws UsageError for a malformed flag or an unreadable FILE or key.
 */
export function verifyStreamFile(
  flags: VerifyStreamFlags,
  out: (line: string) => void,
  err: (line: string) => void,
): number {
  const file = flags['verify-stream'];
  if (file === undefined) throw new UsageError('--verify-stream needs a FILE');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(
      `--verify-stream: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let key: Uint8Array | undefined;
  if (flags['log-key'] !== undefined) {
    try {
      key = readPrivateFile(flags['log-key'], 32);
    } catch (e) {
      throw new UsageError(`--log-key: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const after =
    flags.after === undefined
      ? undefined
      : flags.after === 'first'
        ? null
        : position(flags.after, '--after');
  const head = flags.head === undefined ? undefined : position(flags.head, '--head');
  const records: ReceivedAccessRecord[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const r = recordOf(line);
    if (r === undefined) skipped++;
    else records.push(r);
  }
  const v = verifyAccessStream(records, {
    ...(key === undefined ? {} : { key }),
    ...(after === undefined ? {} : { after }),
    ...(head === undefined ? {} : { head }),
  });
  key?.fill(0);
  if (!v.ok) {
    err(`error: TAMPERED access stream broken at record ${v.seq}: ${v.reason}`);
    return EXIT.error;
  }
  out(
    `verified: ${v.count} records (${v.recomputed ? 'hashes recomputed' : 'links only'}), ${v.duplicates} duplicates, ${skipped} other lines, head ${v.head.seq}:${v.head.hash}`,
  );
  return EXIT.ok;
}
