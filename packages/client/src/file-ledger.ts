/**
 * What this client knows of the contact's files (docs/protocol.md "Files"): each file message
 * it opened and checked (seq, msgId, the sealed FileRef with its key), and the verdicts scanners
 * posted on them. A verdict counts only from a sender certified as `scanner` (judged before it
 * reaches here) and only for the file whose msgId and SHA-256 it names. `infected` sticks; else
 * the latest verdict holds. With a scanner deployed (`scanning`), a file is `pending` until then.
 */
import type { FileBody, ScanState, VerdictBody } from '@latchkey/protocol';
import type { FileInfo, ScanUpdate } from './types.ts';

export interface KnownFile {
  seq: number;
  msgId: string;
  body: FileBody;
}

/** Most files and verdicts remembered (the oldest are forgotten first). */
const MAX_KNOWN = 50_000;

export class FileLedger {
  readonly #scanning: boolean;
  readonly #bySeq = new Map<number, KnownFile>();
  readonly #seqOf = new Map<string, number>();
  readonly #verdicts = new Map<string, Pick<VerdictBody, 'sha256' | 'verdict' | 'signature'>>();

  constructor(scanning: boolean) {
    this.#scanning = scanning;
  }

  /** Records a checked file message; returns what the caller shows of it. */
  file(seq: number, msgId: string, body: FileBody): FileInfo {
    if (!this.#bySeq.has(seq)) {
      this.#bySeq.set(seq, { seq, msgId, body });
      this.#seqOf.set(msgId, seq);
      if (this.#bySeq.size > MAX_KNOWN) {
        const [oldest] = this.#bySeq.keys();
        const known = this.#bySeq.get(oldest!)!;
        this.#bySeq.delete(oldest!);
        this.#seqOf.delete(known.msgId);
      }
    }
    return this.info(seq)!;
  }

  /** Records a scanner's checked verdict; returns the update when it names a known file. */
  verdict(v: VerdictBody): ScanUpdate | null {
    const before = this.#verdicts.get(v.ref);
    if (before?.verdict !== 'infected') {
      const kept: Pick<VerdictBody, 'sha256' | 'verdict' | 'signature'> = {
        sha256: v.sha256,
        verdict: v.verdict,
      };
      if (v.signature !== undefined) kept.signature = v.signature;
      this.#verdicts.set(v.ref, kept);
      if (this.#verdicts.size > MAX_KNOWN) {
        const [oldest] = this.#verdicts.keys();
        this.#verdicts.delete(oldest!);
      }
    }
    const seq = this.#seqOf.get(v.ref);
    if (seq === undefined) return null;
    const info = this.info(seq)!;
    const update: ScanUpdate = { seq, msgId: v.ref, scan: info.scan };
    if (info.signature !== undefined) update.signature = info.signature;
    return update;
  }

  /** A known file message, by seq. */
  get(seq: number): KnownFile | undefined {
    return this.#bySeq.get(seq);
  }

  /** The file of a known message as shown now, with its scan state. */
  info(seq: number): FileInfo | undefined {
    const known = this.#bySeq.get(seq);
    if (!known) return undefined;
    const { file, thumb } = known.body;
    const info: FileInfo = {
      name: file.name,
      size: file.size,
      type: file.type,
      sha256: file.sha256,
      thumbnail: thumb ? { type: thumb.type, width: thumb.width, height: thumb.height } : null,
      scan: this.#scanning ? 'pending' : 'unscanned',
    };
    const v = this.#verdicts.get(known.msgId);
    // A verdict on other bytes than the message names says nothing about this file.
    if (v && v.sha256 === file.sha256) {
      info.scan = v.verdict;
      if (v.signature !== undefined) info.signature = v.signature;
    }
    return info;
  }

  /** Whether the scan state forbids opening the file (deny by default while scanning is on). */
  static blocks(scan: ScanState): boolean {
    return scan === 'pending' || scan === 'infected' || scan === 'error';
  }
}
