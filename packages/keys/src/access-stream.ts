/**
 * The key access log as a stream to a SIEM (docs/siem.md): the record each forwarded event
 * carries with its chain position, its RFC 5424 syslog form (RFC 5424 §6, structured data §6.3,
 * octet-counting framing of RFC 5425 §4.3 / RFC 6587 §3.4.1), and `verifyAccessStream`, which
 * checks what a receiver got: no record missing, each chaining from the one before, and (with
 * the log key, or on an unkeyed chain) each hash recomputed from its fields.
 *
 * Pure functions, no I/O: the key service's forwarders (apps/keyd) and `latchkey keys audit
 * --verify-stream` both use them.
 */
import { constantTimeEqual } from '@latchkey/crypto/compare';
import { Epoch, Id } from '@latchkey/protocol';
import type { AccessLogHead } from './access-log.ts';
import {
  ACCESS_LOG_GENESIS,
  ACCESS_OUTCOMES,
  accessRecordHash,
  type AccessChainAlgorithm,
  type AccessOutcome,
  type ChainedAccessRecord,
} from './access-record.ts';

/** The SD-ID of the structured data element (RFC 5424 §6.3.2; 32473 is RFC 5612's example PEN). */
export const ACCESS_SD_ID = 'latchkey@32473';
/** The APP-NAME of every message. */
export const ACCESS_APP_NAME = 'latchkey-keyd';
/** Facility authpriv (10): security and authorisation messages (RFC 5424 §6.2.1). */
const FACILITY_AUTHPRIV = 10;

/** Which event (webhook type, syslog MSGID) a record is. */
export type AccessEventType = 'key.accessed' | 'key.denied' | 'key.destroyed';

export function accessEventType(outcome: AccessOutcome): AccessEventType {
  switch (outcome) {
    case 'granted':
      return 'key.accessed';
    case 'denied':
    case 'unavailable':
      return 'key.denied';
    case 'destroyed':
      return 'key.destroyed';
  }
}

/** RFC 5424 severity: info for a hand-out, notice for a refusal or destruction, warning when the key manager failed. */
function severity(outcome: AccessOutcome): number {
  switch (outcome) {
    case 'granted':
      return 6;
    case 'denied':
    case 'destroyed':
      return 5;
    case 'unavailable':
      return 4;
  }
}

/** A received record: the stored fields, its chain position, and (when it said) the algorithm. */
export interface ReceivedAccessRecord extends ChainedAccessRecord {
  alg?: AccessChainAlgorithm;
}

/** The `data` of a `key.accessed`, `key.denied` or `key.destroyed` webhook (docs/webhooks.md). */
export interface AccessEventData {
  contactId: string;
  epoch: number;
  participantId: string;
  time: number;
  outcome: AccessOutcome;
  chain: { seq: number; hash: string; prevHash: string; alg: AccessChainAlgorithm };
}

/** The webhook `data` of a record. */
export function accessEventData(
  r: ChainedAccessRecord,
  alg: AccessChainAlgorithm,
): AccessEventData {
  return {
    contactId: r.contactId,
    epoch: r.epoch,
    participantId: r.participantId,
    time: r.time,
    outcome: r.outcome,
    chain: { seq: r.seq, hash: r.hash, prevHash: r.prevHash, alg },
  };
}

/** The record of a webhook body (`{"type","data",...}`) or its `data`; undefined when it is none. */
export function accessRecordFromWebhook(body: unknown): ReceivedAccessRecord | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const d = (typeof b.data === 'object' && b.data !== null ? b.data : b) as Record<string, unknown>;
  const chain = d.chain as Record<string, unknown> | undefined;
  if (typeof chain !== 'object' || chain === null) return undefined;
  const r = {
    seq: chain.seq,
    hash: chain.hash,
    prevHash: chain.prevHash,
    contactId: d.contactId,
    epoch: d.epoch,
    participantId: d.participantId,
    time: d.time,
    outcome: d.outcome,
    ...(chain.alg === undefined ? {} : { alg: chain.alg }),
  };
  return wellFormed(r) ? r : undefined;
}

const HASH = /^[0-9a-f]{64}$/;

function wellFormed(
  r: Record<string, unknown>,
): r is ReceivedAccessRecord & Record<string, unknown> {
  return (
    Number.isSafeInteger(r.seq) &&
    (r.seq as number) >= 1 &&
    typeof r.hash === 'string' &&
    HASH.test(r.hash) &&
    typeof r.prevHash === 'string' &&
    HASH.test(r.prevHash) &&
    Id.safeParse(r.contactId).success &&
    Id.safeParse(r.participantId).success &&
    Epoch.safeParse(r.epoch).success &&
    Number.isSafeInteger(r.time) &&
    (r.time as number) >= 0 &&
    (ACCESS_OUTCOMES as readonly unknown[]).includes(r.outcome) &&
    (r.alg === undefined || r.alg === 'hmac-sha256' || r.alg === 'sha256')
  );
}

// ---- syslog (RFC 5424) ------------------------------------------------------------------------

/** An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3). */
export function escapeSdValue(v: string): string {
  return v.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** HOSTNAME per RFC 5424 §6.2.4: 1-255 printable US-ASCII characters, else the nil value. */
export function syslogHostname(name: string): string {
  const h = name.replace(/[^\x21-\x7e]/g, '').slice(0, 255);
  return h === '' ? '-' : h;
}

/**
 * One record as an RFC 5424 message (without framing): facility authpriv, APP-NAME
 * `latchkey-keyd`, MSGID the event type, the record in the `latchkey@32473` element, TIMESTAMP
 * the record's time (so a message sent again is byte-identical but for PROCID).
 */
export function formatAccessSyslog(
  r: ChainedAccessRecord,
  opts: { hostname: string; procId?: string | number; alg: AccessChainAlgorithm },
): string {
  const pri = FACILITY_AUTHPRIV * 8 + severity(r.outcome);
  const params: [string, string | number][] = [
    ['seq', r.seq],
    ['contact', r.contactId],
    ['epoch', r.epoch],
    ['participant', r.participantId],
    ['outcome', r.outcome],
    ['time', r.time],
    ['hash', r.hash],
    ['prev', r.prevHash],
    ['alg', opts.alg],
  ];
  const sd = `[${ACCESS_SD_ID} ${params.map(([k, v]) => `${k}="${escapeSdValue(String(v))}"`).join(' ')}]`;
  const procId =
    opts.procId === undefined ? '-' : syslogHostname(String(opts.procId)).slice(0, 128);
  const text =
    r.outcome === 'destroyed'
      ? `keys of ${r.contactId} destroyed up to epoch ${r.epoch} by ${r.participantId}`
      : `key ${r.outcome} to ${r.participantId} for ${r.contactId} epoch ${r.epoch}`;
  return `<${pri}>1 ${new Date(r.time).toISOString()} ${syslogHostname(opts.hostname)} ${ACCESS_APP_NAME} ${procId} ${accessEventType(r.outcome)} ${sd} ${text}`;
}

/** Octet-counting framing (RFC 5425 §4.3): `MSG-LEN SP SYSLOG-MSG`, the length in octets. */
export function frameOctetCounted(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

/**
 * Splits a byte stream of octet-counted frames; returns the complete messages and what is left
 * of an incomplete one.
 * @throws RangeError when the stream is not octet-counted.
 */
export function splitOctetCounted(buf: Buffer): { messages: string[]; rest: Buffer } {
  const messages: string[] = [];
  let at = 0;
  for (;;) {
    const sp = buf.indexOf(0x20, at);
    if (sp < 0 || sp - at > 10) {
      if (buf.length - at > 10) throw new RangeError('not an octet-counted frame');
      break;
    }
    const lenText = buf.subarray(at, sp).toString('ascii');
    if (!/^[1-9]\d*$/.test(lenText)) throw new RangeError('not an octet-counted frame');
    const end = sp + 1 + Number(lenText);
    if (end > buf.length) break;
    messages.push(buf.subarray(sp + 1, end).toString('utf8'));
    at = end;
  }
  return { messages, rest: buf.subarray(at) };
}

/** The SD elements of the rest of a message after MSGID: id and params, and where MSG starts. */
function parseStructuredData(
  s: string,
): { elements: Map<string, Map<string, string>>; end: number } | undefined {
  const elements = new Map<string, Map<string, string>>();
  if (s.startsWith('-')) return { elements, end: 1 };
  let i = 0;
  while (s[i] === '[') {
    i++;
    const idEnd = s.slice(i).search(/[ \]]/);
    if (idEnd <= 0) return undefined;
    const id = s.slice(i, i + idEnd);
    i += idEnd;
    const params = new Map<string, string>();
    while (s[i] === ' ') {
      i++;
      const eq = s.indexOf('="', i);
      if (eq <= i) return undefined;
      const name = s.slice(i, eq);
      i = eq + 2;
      let value = '';
      for (;;) {
        const c = s[i];
        if (c === undefined) return undefined;
        if (c === '\\' && (s[i + 1] === '"' || s[i + 1] === '\\' || s[i + 1] === ']')) {
          value += s[i + 1];
          i += 2;
        } else if (c === '"') {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      params.set(name, value);
    }
    if (s[i] !== ']') return undefined;
    i++;
    elements.set(id, params);
  }
  return i === 0 ? undefined : { elements, end: i };
}

/**
 * The record of one RFC 5424 message of ours (as written by `formatAccessSyslog`, without
 * framing; a trailing newline is allowed); undefined for any other message or a malformed one.
 */
export function parseAccessSyslog(line: string): ReceivedAccessRecord | undefined {
  const m = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (.*)$/s.exec(line.replace(/\r?\n$/, ''));
  if (!m) return undefined;
  const [, , , , app, , msgId, rest] = m;
  if (app !== ACCESS_APP_NAME || rest === undefined) return undefined;
  const sd = parseStructuredData(rest);
  const p = sd?.elements.get(ACCESS_SD_ID);
  if (!p) return undefined;
  const int = (k: string): number | undefined => {
    const v = p.get(k);
    return v !== undefined && /^\d{1,16}$/.test(v) ? Number(v) : undefined;
  };
  const r: Record<string, unknown> = {
    seq: int('seq'),
    contactId: p.get('contact'),
    epoch: int('epoch'),
    participantId: p.get('participant'),
    time: int('time'),
    outcome: p.get('outcome'),
    hash: p.get('hash'),
    prevHash: p.get('prev'),
    ...(p.has('alg') ? { alg: p.get('alg') } : {}),
  };
  if (!wellFormed(r)) return undefined;
  if (msgId !== accessEventType(r.outcome)) return undefined;
  return r;
}

// ---- verification -----------------------------------------------------------------------------

export type AccessStreamVerdict =
  | {
      ok: true;
      /** Distinct records checked. */
      count: number;
      /** Copies of a record received more than once (identical; at-least-once delivery). */
      duplicates: number;
      /** The last record's position: note it, and pass it as `after` next time. */
      head: AccessLogHead;
      /** Whether every hash was recomputed from its record (else only the links were checked). */
      recomputed: boolean;
    }
  | { ok: false; seq: number; reason: string };

export interface VerifyAccessStreamOptions {
  /**
   * The log key (keys/access-log.key) of an HMAC-SHA256 chain: each hash is then recomputed.
   * Without it a keyed chain is checked by its links only (seq without gap, each `prevHash`
   * equal to the previous record's `hash`); an unkeyed (`sha256`) chain is always recomputed.
   */
  key?: Uint8Array;
  /**
   * Where the stream starts: the position the receiver verified up to before (default seq 0 and
   * the zero hash: the stream from the log's first record). `null`: start at the first record
   * received, trusting its `prevHash` (an endpoint added after the log began).
   */
  after?: AccessLogHead | null;
  /** A position noted elsewhere (`latchkey keys audit`): it must be among the records, unchanged. */
  head?: AccessLogHead;
}

const fields = (r: ChainedAccessRecord): string =>
  JSON.stringify([
    r.seq,
    r.contactId,
    r.epoch,
    r.participantId,
    r.time,
    r.outcome,
    r.hash,
    r.prevHash,
  ]);

/**
 * Checks a received stream of access records (in any order, with duplicates): reports the first
 * record missing, changed, inserted or out of its chain, or two different records under one seq.
 */
export function verifyAccessStream(
  records: Iterable<ReceivedAccessRecord>,
  opts: VerifyAccessStreamOptions = {},
): AccessStreamVerdict {
  const bySeq = new Map<number, ReceivedAccessRecord>();
  let duplicates = 0;
  for (const r of records) {
    if (!wellFormed(r as unknown as Record<string, unknown>))
      return {
        ok: false,
        seq: Number.isSafeInteger(r.seq) ? r.seq : 0,
        reason: 'malformed record',
      };
    const seen = bySeq.get(r.seq);
    if (seen === undefined) bySeq.set(r.seq, r);
    else if (fields(seen) === fields(r)) duplicates++;
    else return { ok: false, seq: r.seq, reason: 'two different records with this seq' };
  }
  const sorted = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  const algs = new Set(sorted.map((r) => r.alg).filter((a) => a !== undefined));
  if (algs.size > 1)
    return { ok: false, seq: sorted[0]?.seq ?? 0, reason: 'mixed chain algorithms' };
  const alg = [...algs][0];
  const key = opts.key;
  if (key !== undefined && key.length < 32)
    throw new RangeError('log key must be at least 32 bytes');
  const recompute = key !== undefined || alg === 'sha256';
  const first = sorted[0];
  const start: AccessLogHead =
    opts.after === null
      ? { seq: (first?.seq ?? 1) - 1, hash: first?.prevHash ?? ACCESS_LOG_GENESIS }
      : (opts.after ?? { seq: 0, hash: ACCESS_LOG_GENESIS });
  let prev = start.hash;
  let expect = start.seq + 1;
  for (const r of sorted) {
    if (r.seq <= start.seq) continue;
    if (r.seq !== expect) return { ok: false, seq: expect, reason: `record ${expect} missing` };
    if (r.prevHash !== prev)
      return { ok: false, seq: r.seq, reason: `does not chain from record ${r.seq - 1}` };
    if (recompute) {
      const want = accessRecordHash(Buffer.from(r.prevHash, 'hex'), r.seq, r, key);
      if (!constantTimeEqual(want, Buffer.from(r.hash, 'hex')))
        return { ok: false, seq: r.seq, reason: 'record altered (hash does not match)' };
    }
    prev = r.hash;
    expect++;
  }
  const head: AccessLogHead = { seq: expect - 1, hash: prev };
  if (opts.head !== undefined && opts.head.seq > start.seq) {
    const at = bySeq.get(opts.head.seq);
    if (at === undefined)
      return {
        ok: false,
        seq: opts.head.seq,
        reason: `records up to ${opts.head.seq} missing (cut off)`,
      };
    if (at.hash !== opts.head.hash.toLowerCase())
      return { ok: false, seq: opts.head.seq, reason: 'head does not match' };
  }
  return { ok: true, count: expect - 1 - start.seq, duplicates, head, recomputed: recompute };
}
