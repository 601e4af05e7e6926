/**
 * @latchkey/scanner-app: the attachment scanner (docs/operations.md "Scanning attachments"). A
 * participant with role `scanner` in each contact it is told about by the relay's webhooks, which
 * judges every file with clamd and posts signed verdicts. `latchkey start --scanner` embeds it
 * through `startScanner`; `main.ts` runs it as a process of its own.
 */
export { startScanner, SCANNER_EVENTS, type Scanner, type ScannerOptions } from './scanner.ts';
export {
  ClamdClient,
  ClamdUnreachableError,
  CLAMD_DEFAULT_STREAM_MAX,
  parseClamdAddress,
  parseInstreamReply,
  type ClamdAddress,
  type ClamdOptions,
  type ClamdResult,
} from './clamd.ts';
export {
  startAttachedScanner,
  registerWithRelay,
  ATTACHED_DESCRIPTION,
  type RelayAdmin,
} from './attach.ts';
export { judgeFile, type Judgement, type JudgementCode } from './judge.ts';
export {
  loadConfig,
  ConfigError,
  DEFAULT_SCANNER_PORT,
  DEFAULT_CLAMD,
  type ScannerConfig,
} from './config.ts';
export { jsonLog, type ScannerLog, type ScannerLogEvent } from './log.ts';
