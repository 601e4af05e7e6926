/**
 * Primitive wire types: identifiers, base64url byte strings, integers. Every other schema is
 * built from these, so a limit changed here holds everywhere.
 */
import { z } from 'zod';

/** Contact and participant ids: opaque, URL-safe, 1..64 characters, no personal data. */
export const Id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'id must be 1-64 of [A-Za-z0-9_-]');

/** Client-generated message id (random, at least 96 bits as base64url). */
export const MsgId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{16,64}$/, 'msgId must be 16-64 of [A-Za-z0-9_-]');

/** Base64url without padding, bounded in characters. */
export function b64url(minChars: number, maxChars: number) {
  return z
    .string()
    .min(minChars)
    .max(maxChars)
    .regex(/^[A-Za-z0-9_-]*$/, 'must be base64url without padding')
    .refine((s) => s.length % 4 !== 1, 'not a valid base64url length');
}

/** Exactly `n` bytes as base64url (no padding). */
export function b64urlBytes(n: number) {
  const chars = Math.ceil((n * 4) / 3);
  return b64url(chars, chars);
}

export const Epoch = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31 - 1);
export const Seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
/** A seq cursor: 0 means "before the first message". */
export const SeqCursor = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Unix time in milliseconds. */
export const TimeMs = z.number().int().min(0).max(8.64e15);

/**
 * A participant's role. `supervisor` reads only; `scanner` is an enterprise-run service that reads
 * files to scan them and posts signed verdicts, never text (docs/threat-model.md "The scanner").
 */
export const Role = z.enum(['visitor', 'agent', 'supervisor', 'scanner']);
export type Role = z.infer<typeof Role>;

/** Roles allowed to send messages (text and files). Supervisors read (and later moderate) only. */
export const SENDING_ROLES: ReadonlySet<Role> = new Set(['visitor', 'agent']);

/**
 * Roles the relay accepts envelopes from: the sending roles, and the scanner, whose verdicts are
 * envelopes too. What a scanner's envelope may hold (a verdict, never text) is the readers' check,
 * since the relay cannot see inside.
 */
export const ENVELOPE_ROLES: ReadonlySet<Role> = new Set([...SENDING_ROLES, 'scanner']);
