import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from './_helpers.ts';
import { KeyAccessLog } from '../src/access-log.ts';
import { ACCESS_LOG_GENESIS, type ChainedAccessRecord } from '../src/access-record.ts';
import {
  accessEventData,
  accessRecordFromWebhook,
  escapeSdValue,
  formatAccessSyslog,
  frameOctetCounted,
  parseAccessSyslog,
  splitOctetCounted,
  verifyAccessStream,
  type ReceivedAccessRecord,
} from '../src/access-stream.ts';

let dir: string;
let cleanup: () => void;
const logs: KeyAccessLog[] = [];
const KEY = new Uint8Array(32).fill(7);

function filled(n: number, keyed = true): KeyAccessLog {
  const key = keyed ? KEY : undefined;
  const log = new KeyAccessLog({
    path: join(dir, `log-${logs.length}.db`),
    ...(key === undefined ? {} : { key }),
  });
  logs.push(log);
  const outcomes = ['granted', 'denied', 'unavailable', 'granted', 'destroyed'] as const;
  for (let i = 0; i < n; i++) {
    log.append({
      contactId: `c${i % 3}`,
      epoch: i % 4,
      participantId: i % 5 === 4 ? 'admin' : `p${i}`,
      time: 1_700_000_000_000 + i,
      outcome: outcomes[i % 5] ?? 'granted',
    });
  }
  return log;
}

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
});
afterEach(() => {
  for (const l of logs.splice(0)) l.close();
  cleanup();
});

describe('chained records and cursors', () => {
  it('listChained gives each record the hash it chains from, across batches', () => {
    const log = filled(7);
    const all = log.listChained(0, 100);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all[0]?.prevHash).toBe(ACCESS_LOG_GENESIS);
    for (let i = 1; i < all.length; i++) expect(all[i]?.prevHash).toBe(all[i - 1]?.hash);
    expect(log.listChained(3, 2)).toEqual(all.slice(3, 5));
    expect(log.algorithm).toBe('hmac-sha256');
  });

  it('cursors are stored per name and survive a reopen', () => {
    const log = filled(3);
    expect(log.cursor('syslog')).toBe(0);
    log.setCursor('syslog', 2);
    log.setCursor('webhooks', 3);
    const again = new KeyAccessLog({ path: join(dir, 'log-0.db'), key: KEY });
    logs.push(again);
    expect([again.cursor('syslog'), again.cursor('webhooks')]).toEqual([2, 3]);
  });

  it('onAppend hears every append after its commit; a throwing listener fails nothing', () => {
    const log = filled(0);
    const heard: number[] = [];
    log.onAppend(() => {
      throw new Error('listener bug');
    });
    const off = log.onAppend((r) => heard.push(r.seq));
    log.append({ contactId: 'c', epoch: 0, participantId: 'p', time: 1, outcome: 'granted' });
    off();
    log.append({ contactId: 'c', epoch: 0, participantId: 'p', time: 2, outcome: 'denied' });
    expect(heard).toEqual([1]);
    expect(log.verify().ok).toBe(true);
  });
});

describe('verifyAccessStream', () => {
  it('accepts the whole stream in any order with duplicates, recomputing with the key', () => {
    const recs = filled(12).listChained(0, 100);
    const shuffled = [...recs].reverse().concat(recs.slice(2, 5));
    const v = verifyAccessStream(shuffled, { key: KEY });
    expect(v).toEqual({
      ok: true,
      count: 12,
      duplicates: 3,
      head: { seq: 12, hash: recs[11]?.hash },
      recomputed: true,
    });
    // Without the key: links only.
    expect(verifyAccessStream(recs)).toMatchObject({ ok: true, recomputed: false });
    // An unkeyed chain is always recomputed.
    const plain = filled(4, false).listChained(0);
    expect(verifyAccessStream(plain.map((r) => ({ ...r, alg: 'sha256' as const })))).toMatchObject({
      ok: true,
      recomputed: true,
    });
  });

  it('reports a removed, altered, inserted, forked or reordered record, and a cut-off tail', () => {
    const recs = filled(10).listChained(0, 100);
    const at = (i: number): ChainedAccessRecord => recs[i] as ChainedAccessRecord;
    // Removed.
    expect(verifyAccessStream([...recs.slice(0, 4), ...recs.slice(5)], { key: KEY })).toEqual({
      ok: false,
      seq: 5,
      reason: 'record 5 missing',
    });
    // Altered, hash left as it was: only the key catches it...
    const altered = recs.map((r) => (r.seq === 7 ? { ...r, outcome: 'granted' as const } : r));
    expect(at(6).outcome).not.toBe('granted');
    expect(verifyAccessStream(altered, { key: KEY })).toMatchObject({ ok: false, seq: 7 });
    expect(verifyAccessStream(altered)).toMatchObject({ ok: true });
    expect(verifyAccessStream(altered, { key: new Uint8Array(32) })).toMatchObject({
      ok: false,
      seq: 1,
      reason: 'record altered (hash does not match)',
    });
    // ...and an altered record with a made-up hash breaks the next link even without the key.
    const rehashed = recs.map((r) => (r.seq === 6 ? { ...r, hash: 'f'.repeat(64) } : r));
    expect(verifyAccessStream(rehashed)).toEqual({
      ok: false,
      seq: 7,
      reason: 'does not chain from record 6',
    });
    // Inserted (renumbered after it): its neighbour's prevHash does not match.
    const fake = { ...at(3), participantId: 'mallory', prevHash: at(3).hash, seq: 5 };
    const inserted = [
      ...recs.slice(0, 4),
      fake,
      ...recs.slice(4).map((r) => ({ ...r, seq: r.seq + 1 })),
    ];
    expect(verifyAccessStream(inserted, { key: KEY })).toMatchObject({ ok: false, seq: 5 });
    // Two different records with one seq (a fork, or a replay of an older database).
    expect(verifyAccessStream([...recs, { ...at(2), epoch: 99 }])).toEqual({
      ok: false,
      seq: 3,
      reason: 'two different records with this seq',
    });
    // Reordered: two records swap places (seq kept with the position).
    const swapped = recs.map((r, i) =>
      i === 7 ? { ...at(8), seq: 8 } : i === 8 ? { ...at(7), seq: 9 } : r,
    );
    expect(verifyAccessStream(swapped)).toMatchObject({ ok: false, seq: 8 });
    // Cut off: a head noted earlier is no longer reached.
    expect(
      verifyAccessStream(recs.slice(0, 7), { head: { seq: 9, hash: at(8).hash } }),
    ).toMatchObject({ ok: false, seq: 9, reason: 'records up to 9 missing (cut off)' });
    // Starting later: from a position verified before, or trusting the first received.
    expect(
      verifyAccessStream(recs.slice(4), { after: { seq: 4, hash: at(3).hash }, key: KEY }),
    ).toMatchObject({ ok: true, count: 6 });
    expect(verifyAccessStream(recs.slice(4))).toMatchObject({
      ok: false,
      reason: 'record 1 missing',
    });
    expect(verifyAccessStream(recs.slice(4), { after: null })).toMatchObject({
      ok: true,
      count: 6,
    });
    expect(
      verifyAccessStream(recs.slice(4), { after: { seq: 4, hash: 'a'.repeat(64) } }),
    ).toMatchObject({ ok: false, seq: 5 });
  });
});

describe('syslog and webhook forms', () => {
  it('RFC 5424 message: header, escaped structured data, round trip through octet framing', () => {
    const [r] = filled(1).listChained(0) as [ChainedAccessRecord];
    const msg = formatAccessSyslog(r, {
      hostname: 'keys.example.com',
      procId: 42,
      alg: 'hmac-sha256',
    });
    expect(msg).toBe(
      `<86>1 2023-11-14T22:13:20.000Z keys.example.com latchkey-keyd 42 key.accessed ` +
        `[latchkey@32473 seq="1" contact="c0" epoch="0" participant="p0" outcome="granted" ` +
        `time="1700000000000" hash="${r.hash}" prev="${'0'.repeat(64)}" alg="hmac-sha256"] ` +
        `key granted to p0 for c0 epoch 0`,
    );
    expect(escapeSdValue('a"b\\c]d')).toBe('a\\"b\\\\c\\]d');
    const frames = Buffer.concat([frameOctetCounted(msg), frameOctetCounted(`${msg}\n`)]);
    const { messages, rest } = splitOctetCounted(frames.subarray(0, frames.length - 3));
    expect(messages).toEqual([msg]);
    expect(rest.length).toBeGreaterThan(0);
    expect(parseAccessSyslog(msg)).toEqual({ ...r, alg: 'hmac-sha256' });
    // Another program's line, or ours with a wrong MSGID, is not a record.
    expect(parseAccessSyslog('<13>1 - host app - - - hello')).toBeUndefined();
    expect(parseAccessSyslog(msg.replace(' key.accessed ', ' key.denied '))).toBeUndefined();
  });

  it('webhook data converts back to the record', () => {
    const recs = filled(5).listChained(0);
    const bodies = recs.map((r) => ({ type: 'x', data: accessEventData(r, 'hmac-sha256') }));
    const back = bodies.map((b) => accessRecordFromWebhook(b)) as ReceivedAccessRecord[];
    expect(back.map(({ alg: _alg, ...r }) => r)).toEqual(recs);
    expect(verifyAccessStream(back, { key: KEY })).toMatchObject({ ok: true, count: 5 });
    expect(
      accessRecordFromWebhook({ type: 'key.rotated', data: { contactId: 'c' } }),
    ).toBeUndefined();
  });
});

describe('docs/siem.md test vectors', () => {
  it('the published chain hashes and syslog line', () => {
    const key = new Uint8Array(32).fill(7);
    const r1 = { seq: 1, contactId: 'c-81', epoch: 0, participantId: 'visitor-1' };
    const r2 = { seq: 2, contactId: 'c-81', epoch: 0, participantId: 'visitor-2' };
    const records = [
      { ...r1, time: 1777885923120, outcome: 'granted' as const },
      { ...r2, time: 1777885923500, outcome: 'denied' as const },
    ];
    const hmac = [
      '22fd26dfb4a7c6bf2b6a77270a7c1fa25dffd589f3d1ba7ef1624b4596957fca',
      '4929c139880a7a6d636b5691718d0442a5e03c3982a18e752d3d352fe49b1eb8',
    ];
    const sha = [
      '7888c9388bc4ce86ccfb2e97975c9d499c38b452ae4aae47069790be3cbe05ce',
      'a95273420eb0ea91f261c1e888328df4c4f9af0eca20bceae1a021aa29cefbdc',
    ];
    const chain = (hashes: string[]) =>
      records.map((r, i) => ({
        ...r,
        hash: hashes[i] ?? '',
        prevHash: hashes[i - 1] ?? ACCESS_LOG_GENESIS,
      }));
    expect(verifyAccessStream(chain(hmac), { key })).toMatchObject({ ok: true, recomputed: true });
    expect(
      verifyAccessStream(chain(sha).map((r) => ({ ...r, alg: 'sha256' as const }))),
    ).toMatchObject({ ok: true, recomputed: true });
    const line = formatAccessSyslog(chain(hmac)[1] as ChainedAccessRecord, {
      hostname: 'keys.example.com',
      procId: 4242,
      alg: 'hmac-sha256',
    });
    expect(line).toBe(
      '<85>1 2026-05-04T09:12:03.500Z keys.example.com latchkey-keyd 4242 key.denied [latchkey@32473 seq="2" contact="c-81" epoch="0" participant="visitor-2" outcome="denied" time="1777885923500" hash="4929c139880a7a6d636b5691718d0442a5e03c3982a18e752d3d352fe49b1eb8" prev="22fd26dfb4a7c6bf2b6a77270a7c1fa25dffd589f3d1ba7ef1624b4596957fca" alg="hmac-sha256"] key denied to visitor-2 for c-81 epoch 0',
    );
    expect(frameOctetCounted(line).subarray(0, 4).toString()).toBe('392 ');
  });
});
