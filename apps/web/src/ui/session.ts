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
  /**
   * The deployment runs a virus scanner on attachments: files stay blocked until a clean
   * verdict (`ClientOptions.scanning`). Absent: false.
   */
  scanning?: boolean;
  /** Other participants the backend knows of, with their roles. */
  participants?: { id: string; role: Role }[];
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const DEMO_KEY_PARAM = 'demo-key';
const DEMO_KEY_STORAGE = 'latchkey:demo-key';

/**
 * Headers for the development demo backend (pages that opt in with `data-demo`): its per-start
 * key, from the page URL's fragment (`#demo-key=...`, as `latchkey start` prints the URLs; then
 * taken out of the address bar) or, after that, from this tab's sessionStorage.
 */
export function demoHeaders(): Record<string, string> {
  let key: string | null;
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get(DEMO_KEY_PARAM);
  if (fromUrl !== null && /^[A-Za-z0-9_-]{16,128}$/.test(fromUrl)) {
    key = fromUrl;
    params.delete(DEMO_KEY_PARAM);
    const rest = params.toString();
    history.replaceState(
      history.state,
      '',
      `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`,
    );
    try {
      sessionStorage.setItem(DEMO_KEY_STORAGE, key);
    } catch {
      // Storage disabled: this page load still works.
    }
  } else {
    try {
      key = sessionStorage.getItem(DEMO_KEY_STORAGE);
    } catch {
      key = null;
    }
  }
  return key === null ? {} : { 'x-latchkey-demo-key': key };
}
/** The roles that use these pages; a `scanner` session (a service, never a person) is refused. */
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
    typeof v.serviceKey === 'string' &&
    (v.scanning === undefined || typeof v.scanning === 'boolean');
  if (!ok) throw new TypeError('malformed session');
  return v as SessionInfo;
}

/** POSTs `body` as JSON (with any extra `headers`) and parses a session from the answer. */
export async function requestSession(
  url: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<SessionInfo> {
  const res = await fetch(url, {
    method: 'POST',
    credentials: 'include',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`session request failed (${res.status})`);
  return parseSession(await res.json());
}
