/**
 * @latchkey/client: the client SDK for browsers and Node. Connect with a participant token,
 * send sealed messages, receive opened ones in order, read history, resume after reconnects.
 */
export { LatchkeyClient } from './client.ts';
export type { ClientOptions, SendOptions, PendingMessage } from './options.ts';
export type {
  ChatMessage,
  FailedMessage,
  FileInfo,
  HistoryEntry,
  ScanUpdate,
  VerdictInfo,
} from './types.ts';
export type { FileSource, FileSourceLike } from './file-upload.ts';
export type { SendFileOptions } from './files.ts';
export type { ReadOptions as OpenFileOptions } from './file-download.ts';
export { relayHttpBase } from './file-http.ts';
export type { SendResult } from './send-queue.ts';
export type { ConnectionState, WebSocketLike, WebSocketConstructor } from './connection.ts';
export { MemoryOutbox, type OutboxStore } from './outbox.ts';
export { IndexedDbOutbox } from './indexeddb-outbox.ts';
export { verifyCertificate, CERT_CONTEXT, type VerifiedSender } from './certificate.ts';
export {
  fetchContactKey,
  fetchEpochStatement,
  fetchServiceKey,
  type FetchLike,
} from './key-service.ts';
export { KeyRing, verifyStatement, type StatementView } from './key-ring.ts';
export {
  TranscriptVerifier,
  type IntegrityCode,
  type IntegrityFinding,
  type TranscriptCheckpoint,
  type TranscriptInput,
  type LaterEnvelope,
} from './transcript.ts';
export { cryptoHeader } from './open.ts';
export { KeyReceiver, type KeyDeliveryMode } from './key-delivery.ts';
export type { TypingEvent, SeenEvent, ReceiptKind } from './signals.ts';
