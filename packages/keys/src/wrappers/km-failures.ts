/**
 * What the External Key Manager API client (_km-client.ts) reports when the key manager fails:
 * the failure record given to the log and `/healthz`, the distinct message of each kind (401
 * and 403 read differently), the operation as a path template (no contact id), and the
 * internal outcomes of an attempt (retried, refused, not sent).
 */
import { LatchkeyError } from '@latchkey/protocol';

/**
 * One failure of the key manager: what was asked, how it answered, and why that failed. Holds
 * no secret, key, body or contact id (the path is a template).
 */
export interface KmFailure {
  /** Unix ms. */
  at: number;
  /** Method and path template, e.g. `POST /v1/keys/{keyId}/unwrap`. */
  op: string;
  /** HTTP status when the service answered at all. */
  status?: number;
  /** The error code of its answer, when it sent one. */
  code?: string;
  /** Our words: `unavailable`, `malformed`, `signature refused`, `access refused`, ... */
  kind: KmFailureKind;
  /** One line for operators: the status, code, the service's own message, what to check. */
  reason: string;
  /** Whether the call will be retried. */
  retrying: boolean;
}

export type KmFailureKind =
  | 'unavailable'
  | 'malformed'
  | 'signature-refused'
  | 'clock-refused'
  | 'access-refused'
  | 'refused'
  | 'decrypt-failed';

/** The user-facing message of each kind (distinct, so 401 and 403 read differently). */
export const KIND_MESSAGE: Record<KmFailureKind, string> = {
  unavailable: 'external key manager unavailable',
  malformed: 'malformed answer from the external key manager',
  'signature-refused': 'the external key manager refused our signature (401)',
  'clock-refused': 'the external key manager refused our timestamp (401): check the clocks',
  'access-refused': 'the external key manager refused access by its policy (403)',
  refused: 'the external key manager refused the request',
  'decrypt-failed': 'the wrapped key does not authenticate at the external key manager',
};

/** `GET /v1/store/contacts/c-123/keys/4?reason=fetch` → `GET /v1/store/contacts/{contactId}/keys/{epoch}`. */
export function kmOperation(method: string, path: string): string {
  const template = (path.split('?')[0] ?? '')
    .replace(/\/v1\/store\/contacts\/[^/]+/, '/v1/store/contacts/{contactId}')
    .replace(/\/keys\/(?:\d+|current)$/, '/keys/{epoch}')
    .replace(/^(.*\/v1\/keys\/)[^/]+/, '$1{keyId}');
  return `${method} ${template}`;
}

export function keyUnavailable(message: string, detail: string, cause?: unknown): LatchkeyError {
  return new LatchkeyError('KEY_UNAVAILABLE', message, {
    detail,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** An attempt that failed in a way worth retrying (outage, timeout, 5xx, garbage). */
export class Transient extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly kind: KmFailureKind = 'unavailable',
  ) {
    super(message);
  }
}

/** A refusal (4xx) that is not retried; carries what the failure record needs. */
export class Refusal extends LatchkeyError {
  constructor(
    readonly failure: Omit<KmFailure, 'at' | 'op' | 'retrying'>,
    message: string,
  ) {
    super('KEY_UNAVAILABLE', message, { detail: failure.reason });
  }
}

/** The request could not even be made (no token): says nothing about the service. */
export class NotSent extends Error {
  constructor(readonly error: LatchkeyError) {
    super(error.message);
  }
}
