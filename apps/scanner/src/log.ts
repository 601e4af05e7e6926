/**
 * The scanner's log events: one JSON object per line, with an event name, ids, codes, counts
 * and times. Never a file's name, type or content, a message's text, a token or a key.
 */
export interface ScannerLogEvent {
  event: string;
  contactId?: string;
  msgId?: string;
  seq?: number;
  /** A code: an error code, a judgement code, a reason. */
  code?: string;
  verdict?: string;
  /** With an infected verdict: the signature clamd named (an engine's name, not file data). */
  signature?: string;
  detail?: string;
  attempt?: number;
  bytes?: number;
  ms?: number;
}

export type ScannerLog = (e: ScannerLogEvent) => void;

/** Writes each event as a line of JSON with its time to `write` (default stderr). */
export function jsonLog(
  write: (line: string) => void = (l) => process.stderr.write(l),
): ScannerLog {
  return (e) => write(`${JSON.stringify({ t: new Date().toISOString(), ...e })}\n`);
}
