/**
 * Encrypted attachments (docs/protocol.md "Files"): what a file message carries inside its sealed
 * envelope, the scanner's verdict, and the relay's file HTTP API (upload, resume, capability
 * links). A file's bytes are encrypted in the client with c2sp.org/chunked-encryption
 * (@latchkey/crypto/chunked) under a random key of its own, with a context that binds them to the
 * contact, the message and the part (`fileContext`); the relay stores and serves ciphertext only
 * and learns its length, never the name, type, size or key, which travel sealed in the message.
 */
import { z } from 'zod';
import { Id, MsgId, TimeMs, b64urlBytes } from './primitives.ts';

/** A blob id: 16 random bytes the relay assigns, base64url. */
export const BlobId = z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'blob id must be 22 of base64url');
export type BlobId = z.infer<typeof BlobId>;

/** Lower-case hex SHA-256. */
export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lower-case hex');

/**
 * A media type as the sender declared it (RFC 6838 shape, lower case, no parameters). Readers
 * never trust it for rendering: it only picks an icon and the download's suggested type.
 */
export const MediaType = z
  .string()
  .max(127)
  .regex(/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/, 'not a media type');

/** A file name for display and download: 1..255 characters, no path separators or controls. */
export const FileName = z
  .string()
  .min(1)
  .max(255)
  // eslint-disable-next-line no-control-regex
  .regex(/^[^/\\\u0000-\u001f\u007f]+$/, 'file name may not hold / \\ or control characters')
  .refine((s) => s !== '.' && s !== '..', 'not a file name');

/** Defaults of the relay's file limits (each configurable, see RelayOptions `files`). */
export const FILE_LIMITS = {
  /** Largest file ciphertext the relay accepts by default (bytes). */
  maxFileBytes: 100 * 1024 * 1024 + 1024 * 1024,
  /** Most file ciphertext bytes one contact may hold by default. */
  contactQuotaBytes: 1024 * 1024 * 1024,
  /** Largest thumbnail plaintext a client makes or accepts (bytes). */
  maxThumbnailBytes: 256 * 1024,
  /** Largest body of one upload request (bytes); a bigger file takes several. */
  maxUploadRequestBytes: 8 * 1024 * 1024,
  /** How long a capability link stays valid by default (seconds). */
  linkTtlSeconds: 300,
  /** Incomplete uploads older than this are removed (seconds). */
  incompleteTtlSeconds: 24 * 3600,
} as const;

/** A part of a file message: the file itself, or its thumbnail. */
export type FilePart = 'file' | 'thumb';

/** The chunked-encryption context of a part: binds its ciphertext to contact, message and part. */
export function fileContextString(contactId: string, msgId: string, part: FilePart): string {
  return `latchkey.file.v1\u0000${contactId}\u0000${msgId}\u0000${part}`;
}

/** What a file message says about its file (sealed; the relay never sees it). */
export const FileRef = z.strictObject({
  blob: BlobId,
  /** The file's own random 32-byte input key of the chunked encryption. */
  key: b64urlBytes(32),
  name: FileName,
  type: MediaType,
  /** Plaintext size in bytes. */
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** SHA-256 of the plaintext, checked once the whole file is read. */
  sha256: Sha256Hex,
});
export type FileRef = z.infer<typeof FileRef>;

/** An image thumbnail made in the sender's browser, encrypted as a blob of its own. */
export const ThumbnailRef = z.strictObject({
  blob: BlobId,
  key: b64urlBytes(32),
  type: z.enum(['image/jpeg', 'image/png', 'image/webp']),
  size: z.number().int().min(1).max(FILE_LIMITS.maxThumbnailBytes),
  sha256: Sha256Hex,
  width: z.number().int().min(1).max(4096),
  height: z.number().int().min(1).max(4096),
});
export type ThumbnailRef = z.infer<typeof ThumbnailRef>;

const MessageText = z
  .string()
  .min(1)
  .max(16 * 1024);

export const TextBody = z.strictObject({ type: z.literal('text'), text: MessageText });
export const FileBody = z.strictObject({
  type: z.literal('file'),
  file: FileRef,
  thumb: ThumbnailRef.optional(),
  /** An optional caption. */
  text: MessageText.optional(),
});
export type FileBody = z.infer<typeof FileBody>;

/** Scan outcomes a scanner posts. */
export const ScanVerdict = z.enum(['clean', 'infected', 'error']);
export type ScanVerdict = z.infer<typeof ScanVerdict>;

/**
 * A scanner's signed verdict on a file message. Readers accept it only from a sender whose
 * certificate (signed by the key service) has role `scanner`, and only for the file whose
 * message id and SHA-256 it names.
 */
export const VerdictBody = z.strictObject({
  type: z.literal('verdict'),
  /** The msgId of the file message scanned. */
  ref: MsgId,
  /** SHA-256 of the plaintext the scanner read (must equal the file message's). */
  sha256: Sha256Hex,
  verdict: ScanVerdict,
  /** With `infected`: the signature name the engine reported. */
  signature: z.string().min(1).max(200).optional(),
  /** The engine and its database version, for the record. */
  engine: z.string().min(1).max(200).optional(),
});
export type VerdictBody = z.infer<typeof VerdictBody>;

/** What a client shows for a file: no scanner, waiting, or its verdict. */
export type ScanState = 'unscanned' | 'pending' | ScanVerdict;

// ---- The relay's file HTTP API (docs/protocol.md "Files"). Bearer = the participant token. ----

/**
 * `POST /v1/files` body: the ciphertext length the upload will have (at least 72 bytes: the
 * 56-byte header and the tag of an empty final chunk).
 */
export const CreateUploadRequest = z.strictObject({
  size: z.number().int().min(72).max(Number.MAX_SAFE_INTEGER),
});
export type CreateUploadRequest = z.infer<typeof CreateUploadRequest>;

/** The state of an upload (`POST /v1/files`, `GET /v1/files/{blob}/upload`, each `PATCH`). */
export const UploadState = z.strictObject({
  blob: BlobId,
  contactId: Id,
  /** Declared ciphertext length. */
  size: z.number().int().min(0),
  /** Bytes stored so far: the next `PATCH` starts here. */
  offset: z.number().int().min(0),
  complete: z.boolean(),
});
export type UploadState = z.infer<typeof UploadState>;

/** `POST /v1/files/{blob}/link` answer: a short-lived capability URL (path and query). */
export const FileLink = z.strictObject({
  url: z.string().min(1).max(2048),
  expiresAt: TimeMs,
  size: z.number().int().min(0),
});
export type FileLink = z.infer<typeof FileLink>;

/** The HTTP header that carries an upload's offset (`PATCH`, and a 409's answer). */
export const UPLOAD_OFFSET_HEADER = 'upload-offset';

/** The query parameter of a capability link. */
export const CAPABILITY_PARAM = 'cap';

/** A capability link's signed claims (base64url JSON before the `.` of `cap`). */
export const CapabilityClaims = z.strictObject({
  b: BlobId,
  c: Id,
  p: Id,
  /** Expiry, seconds since the epoch. */
  e: z.number().int().min(0),
});
export type CapabilityClaims = z.infer<typeof CapabilityClaims>;

/** `cap` as it appears in a link: claims and HMAC-SHA-256 tag, both base64url. */
export const Capability = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/, 'malformed capability');
