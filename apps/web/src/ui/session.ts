/**
 * What the enterprise's backend hands the browser for one participant of one contact: the
 * participant token (minted server-side; the API secret never reaches the browser) and where to
 * find the relay and key service, with the key service's public key to pin.
 */
import type { Role } from '@latchkey/protocol';

export interface SessionInfo {
  contactId: string;
  participantId: string;
  role: Role;
  token: string;
  /** Token expiry, ms since the epoch. */
  expiresAt: number;
  relayUrl: string;
  keysUrl: string;
  /** The key service's Ed25519 public key (base64url), pinned by the client. */
  serviceKey: string;
  /** Other participants the backend knows of, with their roles. */
  participants?: { id: string; role: Role }[];
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const ROLES: readonly string[] = ['visitor', 'agent', 'supervisor'];

/** Checks the shape of a session answer; anything else is refused rather than half-used. */
export function parseSession(value: unknown): SessionInfo {
  const v = value as Partial<Record<keyof SessionInfo, unknown>> | null;
  const ok =
    v !== null &&
    typeof v === 'object' &&
    typeof v.contactId === 'string' &&
    ID.test(v.contactId) &&
    typeof v.participantId === 'string' &&
    ID.test(v.participantId) &&
    typeof v.role === 'string' &&
    ROLES.includes(v.role) &&
    typeof v.token === 'string' &&
    typeof v.expiresAt === 'number' &&
    typeof v.relayUrl === 'string' &&
    /^wss?:\/\//.test(v.relayUrl) &&
    typeof v.keysUrl === 'string' &&
    /^https?:\/\//.test(v.keysUrl) &&
    typeof v.serviceKey === 'string';
  if (!ok) throw new TypeError('malformed session');
  return v as SessionInfo;
}

/** POSTs `body` as JSON and parses a session from the answer. */
export async function requestSession(url: string, body: Record<string, unknown>): Promise<SessionInfo> {
  const res = await fetch(url, {
    method: 'POST',
    credentials: 'include',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`session request failed (${res.status})`);
  return parseSession(await res.json());
}
