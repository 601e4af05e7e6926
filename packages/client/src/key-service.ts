/**
 * HTTP client of the key service (docs/protocol.md, "Key service"). Fetches a contact's
 * content key for an epoch with the participant token, and the service's public key that
 * signs sender certificates. Every failure becomes a typed LatchkeyError.
 */
import {
  ContactKeyResponse,
  EpochStatementResponse,
  ErrorResponse,
  KEYS_PATHS,
  LatchkeyError,
  ServiceKeyResponse,
  type ContactKeyRequest,
} from '@latchkey/protocol';
import { tlsFailure } from './tls-errors.ts';

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** The part of a zod schema this module uses. */
interface Schema<T> {
  safeParse(value: unknown): { success: true; data: T } | { success: false };
}

async function call<T>(
  fetchImpl: FetchLike,
  url: string,
  init: RequestInit,
  schema: Schema<T>,
): Promise<T> {
  let res: Response;
  try {
    res = await fetchImpl(url, { ...init, cache: 'no-store' });
  } catch (err) {
    throw (
      tlsFailure(err, 'key service') ??
      new LatchkeyError('KEY_UNAVAILABLE', 'key service unreachable', { cause: err })
    );
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new LatchkeyError('KEY_UNAVAILABLE', `key service answered ${res.status} without JSON`);
  }
  if (!res.ok) {
    const parsed = ErrorResponse.safeParse(body);
    if (parsed.success) throw new LatchkeyError(parsed.data.error.code, parsed.data.error.message);
    throw new LatchkeyError('KEY_UNAVAILABLE', `key service answered ${res.status}`);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success)
    throw new LatchkeyError('KEY_UNAVAILABLE', 'key service sent an invalid response');
  return parsed.data;
}

/**
 * Fetches the content key of the token's contact.
 * @throws LatchkeyError with the key service's code (AUTH_INVALID, NOT_FOUND, ...) or KEY_UNAVAILABLE.
 */
export function fetchContactKey(
  fetchImpl: FetchLike,
  keysUrl: string,
  token: string,
  request: ContactKeyRequest,
): Promise<ContactKeyResponse> {
  return call(
    fetchImpl,
    new URL(KEYS_PATHS.contactKey, keysUrl).toString(),
    {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    },
    ContactKeyResponse,
  );
}

/**
 * Fetches the current epoch statement of the token's contact (no key is handed out).
 * @throws LatchkeyError with the key service's code (AUTH_INVALID, FORBIDDEN, ...) or KEY_UNAVAILABLE.
 */
export function fetchEpochStatement(
  fetchImpl: FetchLike,
  keysUrl: string,
  token: string,
): Promise<EpochStatementResponse> {
  return call(
    fetchImpl,
    new URL(KEYS_PATHS.epochStatement, keysUrl).toString(),
    {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    },
    EpochStatementResponse,
  );
}

/**
 * Fetches the key service's Ed25519 public key (trust on first use unless the caller pins it).
 * @throws LatchkeyError KEY_UNAVAILABLE
 */
export function fetchServiceKey(
  fetchImpl: FetchLike,
  keysUrl: string,
): Promise<ServiceKeyResponse> {
  return call(
    fetchImpl,
    new URL(KEYS_PATHS.serviceKey, keysUrl).toString(),
    { method: 'GET' },
    ServiceKeyResponse,
  );
}
