/**
 * Reading stored history (docs/protocol.md "History"): every page after `since`, taken only in
 * ascending, contiguous order (anything else the relay says is its lie), each envelope opened and
 * run through the transcript checks of this read alone (complete from seq 0, or from a checkpoint),
 * a hole in the relay's numbering reported as MISSING.
 */
import { LIMITS, type HistoryFrame, type StoredEnvelope } from '@latchkey/protocol';
import { judge, laterOf, verifierFrom } from './inbox.ts';
import type { StatementView } from './key-ring.ts';
import type { Opened } from './open.ts';
import type { TranscriptCheckpoint } from './transcript.ts';
import type { HistoryEntry } from './types.ts';

export interface HistoryDeps {
  request(args: { since: number; limit: number }): Promise<HistoryFrame>;
  open(env: StoredEnvelope): Promise<Opened>;
  statement(): StatementView | null;
  now(): number;
  selfId: string;
  /** The checkpoint the checks start from at `since` (null: from scratch). */
  checkpointAt(since: number): TranscriptCheckpoint | null | undefined;
}

/**
 * Opens every envelope, all at once (their verifications and decryptions overlap), except that
 * the first envelope of each certificate is opened alone: its certificate is then checked once
 * and cached before the others of the same sender session need it. The checks run afterwards,
 * one envelope at a time in seq order, on the results in the same order.
 */
async function openAll(d: HistoryDeps, envelopes: readonly StoredEnvelope[]): Promise<Opened[]> {
  const pending: Promise<Opened>[] = [];
  const certs = new Set<string>();
  for (const env of envelopes) {
    const opening = d.open(env);
    pending.push(opening);
    if (!certs.has(env.cert.sig)) {
      certs.add(env.cert.sig);
      await opening;
    }
  }
  return Promise.all(pending);
}

/**
 * Reads, opens and checks the stored history after `since`.
 * @throws LatchkeyError UNAVAILABLE when not connected
 */
export async function readHistory(d: HistoryDeps, since: number): Promise<HistoryEntry[]> {
  const envelopes: StoredEnvelope[] = [];
  let cursor = since;
  for (;;) {
    const page = await d.request({ since: cursor, limit: LIMITS.maxHistoryPage });
    for (const env of page.envelopes) {
      // The relay's order must be ascending and contiguous; anything else is its lie.
      if (env.seq <= cursor) continue;
      envelopes.push(env);
      cursor = env.seq;
    }
    if (!page.more || page.envelopes.length === 0) break;
  }
  const opened = await openAll(d, envelopes);
  // What each envelope shows of itself to the checks, made once (not once per later envelope).
  const later = laterOf(opened);
  const verifier = verifierFrom(since, d.checkpointAt(since));
  const out: HistoryEntry[] = [];
  for (let i = 0; i < opened.length; i++) {
    const o = opened[i]!;
    const expected = verifier.seq + 1;
    if (o.env.seq !== expected) {
      // A hole in the relay's numbering: the seqs in between are missing.
      out.push({
        ok: false,
        seq: expected,
        msgId: '',
        senderId: '',
        code: 'INTEGRITY',
        integrity: 'MISSING',
        missing: o.env.seq - expected,
      });
      verifier.skipTo(o.env.seq);
    }
    out.push(
      judge(verifier, o, false, {
        statement: d.statement(),
        now: d.now(),
        selfId: d.selfId,
        later: later.slice(i + 1, i + 1 + LIMITS.maxHistoryPage),
      }),
    );
  }
  return out;
}
