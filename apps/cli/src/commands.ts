/**
 * The participant subcommands of `latchkey`: token, send, read, download (`start` is in
 * start.ts; the file parts in files.ts). Each
 * returns its exit code; output lines are part of the contract documented in README.
 */
import { readFile } from 'node:fs/promises';
import { WebSocket } from 'ws';
import { LatchkeyClient, type HistoryEntry, type WebSocketConstructor } from '@latchkey/client';
import { LatchkeyError, Role } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';
import { apiSecret, dataDir, endpoints, parseTtl } from './config.ts';
import { downloadTo, fileJson, fileLabel, localFile } from './files.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;

export interface TokenFlags {
  contact?: string | undefined;
  participant?: string | undefined;
  role?: string | undefined;
  ttl?: string | undefined;
  data?: string | undefined;
}

/** `latchkey token`: prints a participant token. */
export async function token(flags: TokenFlags, out: Out): Promise<number> {
  if (!flags.contact || !flags.participant || !flags.role) {
    throw new UsageError('token needs --contact, --participant and --role');
  }
  const role = Role.safeParse(flags.role);
  if (!role.success) throw new UsageError('--role must be visitor, agent, supervisor or scanner');
  const ttlSeconds = parseTtl(flags.ttl ?? '1h');
  const secret = await apiSecret(dataDir(flags.data));
  try {
    out(
      await mintToken(secret, {
        contactId: flags.contact,
        participantId: flags.participant,
        role: role.data,
        ttlSeconds,
      }),
    );
  } catch (err) {
    if (LatchkeyError.is(err, 'BAD_REQUEST')) throw new UsageError(err.message);
    throw err;
  }
  return EXIT.ok;
}

export interface ClientFlags {
  token?: string | undefined;
  /** A file holding the token (kept out of the process list, unlike --token). */
  'token-file'?: string | undefined;
  relay?: string | undefined;
  keys?: string | undefined;
  data?: string | undefined;
}

/**
 * The participant token: `--token-file FILE`, else `LATCHKEY_TOKEN`, else `--token` (visible to
 * other users in the process list: the other two keep it out of `/proc`).
 * @throws UsageError when none is given, more than one is, or the file cannot be read.
 */
async function tokenOf(flags: ClientFlags): Promise<string> {
  const given = [flags.token !== undefined, flags['token-file'] !== undefined].filter(
    Boolean,
  ).length;
  if (given > 1) throw new UsageError('give either --token or --token-file, not both');
  if (flags['token-file'] !== undefined) {
    let text: string;
    try {
      text = await readFile(flags['token-file'], 'utf8');
    } catch {
      throw new UsageError(`cannot read --token-file ${flags['token-file']}`);
    }
    const t = text.trim();
    if (t === '') throw new UsageError('--token-file is empty');
    return t;
  }
  const t = flags.token ?? process.env['LATCHKEY_TOKEN']?.trim();
  if (!t) throw new UsageError('a token is required: --token-file FILE, LATCHKEY_TOKEN or --token');
  return t;
}

/**
 * A client for one command. `live` joins the contact, so the whole history is received and
 * checked first: what a send then vouches for having seen (its transcript fields) is real.
 */
async function connect(flags: ClientFlags, live = false): Promise<LatchkeyClient> {
  const tokenText = await tokenOf(flags);
  const ep = await endpoints(flags, dataDir(flags.data));
  return LatchkeyClient.connect({
    relayUrl: ep.relay,
    keysUrl: ep.keys,
    token: tokenText,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    live,
    reconnect: false,
  });
}

const SEND_TIMEOUT_MS = 15_000;

/** Longest a file send may take per MiB, on top of SEND_TIMEOUT_MS. */
const SEND_MS_PER_MIB = 2_000;

export interface SendFlags extends ClientFlags {
  /** A file to encrypt, upload and send (TEXT is then an optional caption). */
  file?: string | undefined;
}

/** `latchkey send`: one message (or `--file` with an optional caption), printed seq after the ack. */
export async function send(flags: SendFlags, text: string | undefined, out: Out): Promise<number> {
  if (flags.file === undefined && (text === undefined || text.length === 0))
    throw new UsageError('send needs the message TEXT (or --file PATH)');
  const file = flags.file === undefined ? null : await localFile(flags.file);
  const client = await connect(flags, true).catch(async (err: unknown) => {
    await file?.close();
    throw err;
  });
  try {
    const budget =
      SEND_TIMEOUT_MS + (file ? Math.ceil(file.source.size / 2 ** 20) * SEND_MS_PER_MIB : 0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LatchkeyError('TIMEOUT', 'no ack from the relay')),
        budget,
      );
    });
    const sending = file
      ? client.sendFile(file.source, text === undefined ? {} : { text })
      : client.send(text ?? '');
    const result = await Promise.race([sending, timeout]).finally(() => clearTimeout(timer));
    out(String(result.seq));
    return EXIT.ok;
  } finally {
    client.close();
    await file?.close();
  }
}

export interface DownloadFlags extends ClientFlags {
  seq?: string | undefined;
  out?: string | undefined;
}

/**
 * `latchkey download`: the verified plaintext of the file of message `--seq` to `--out`; prints
 * `PATH BYTES sha256=HEX`. A file that fails to decrypt leaves nothing at PATH.
 */
export async function download(flags: DownloadFlags, out: Out): Promise<number> {
  if (flags.seq === undefined || !/^[1-9]\d{0,14}$/.test(flags.seq))
    throw new UsageError('download needs --seq N (a positive integer)');
  if (!flags.out) throw new UsageError('download needs --out PATH');
  const seq = Number(flags.seq);
  const client = await connect(flags);
  try {
    // Reading the history checks every message up to the file's, and finds the file's key.
    const entry = (await client.history(0)).find((e) => e.seq === seq);
    if (!entry) throw new LatchkeyError('NOT_FOUND', `no message ${seq}`);
    if (!entry.ok) throw new LatchkeyError(entry.code, `message ${seq} failed its checks`);
    if (!entry.file) throw new LatchkeyError('NOT_FOUND', `message ${seq} carries no file`);
    const done = await downloadTo(client, seq, flags.out, entry.file);
    out(`${flags.out} ${done.bytes} sha256=${done.sha256}`);
    return EXIT.ok;
  } finally {
    client.close();
  }
}

/** Escapes control characters so that a message cannot drive the terminal. */
function printable(text: string): string {
  return text.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export interface ReadFlags extends ClientFlags {
  since?: string | undefined;
  json?: boolean | undefined;
}

function formatEntry(e: HistoryEntry, json: boolean): string {
  if (json) {
    if (e.ok)
      return JSON.stringify(
        fileJson(e) ?? { seq: e.seq, sender: e.senderId, sentAt: e.sentAt, text: e.text },
      );
    if (e.code === 'INTEGRITY') {
      return JSON.stringify({
        seq: e.seq,
        sender: e.senderId || '?',
        error: e.code,
        code: e.integrity,
        ...(e.missing === undefined ? {} : { missing: e.missing }),
      });
    }
    return JSON.stringify({ seq: e.seq, sender: e.senderId, error: e.code });
  }
  if (!e.ok && e.code === 'INTEGRITY') {
    const what = e.integrity === 'MISSING' ? `MISSING ${e.missing ?? 0}` : (e.integrity ?? '');
    return `${e.seq} INTEGRITY ${what} from ${e.senderId || '?'}`;
  }
  if (!e.ok) return `${e.seq} ${e.code} from ${e.senderId}`;
  const shown = fileLabel(e, printable) ?? printable(e.text);
  return `${e.seq} ${new Date(e.sentAt).toISOString()} ${e.senderId}: ${shown}`;
}

/**
 * `latchkey read`: the contact's history after `--since`, each message checked (signature, key,
 * transcript: the whole history is read and checked, only what is after `--since` printed);
 * exit 3 when a message failed to open or failed a check.
 */
export async function read(flags: ReadFlags, out: Out): Promise<number> {
  let since = 0;
  if (flags.since !== undefined) {
    if (!/^\d{1,15}$/.test(flags.since))
      throw new UsageError('--since must be a non-negative integer');
    since = Number(flags.since);
  }
  const client = await connect(flags);
  try {
    const entries = await client.history(0);
    let failed = false;
    for (const e of entries) {
      if (e.seq <= since) continue;
      out(formatEntry(e, flags.json === true));
      if (!e.ok) failed = true;
    }
    return failed ? EXIT.decryptFailed : EXIT.ok;
  } finally {
    client.close();
  }
}
