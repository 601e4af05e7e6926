/**
 * The admin subcommands of `latchkey` (README "Command line"; API in docs/admin-api.md):
 * contacts, close, kick, transfer, invite. Each moderation action goes to the key service
 * first (who may read is decided there), then to the relay; when one side fails the command
 * says which, and what was already applied, and exits 1. A kick or transfer whose key rotation
 * the key service could not do yet (key manager down) is applied on both sides with the
 * rotation pending in the key service's own record: it says `(pending: ...)` and exits 4.
 *
 * Credentials: LATCHKEY_ADMIN_KEY (`<id>:<base64url secret>`), else the dev key derived from the
 * API secret (LATCHKEY_API_SECRET or `<data>/api-secret`). Endpoints as for send/read.
 */
import {
  ADMIN_PATHS,
  ContactResponse,
  ErrorResponse,
  InviteRequest,
  LatchkeyError,
  ListContactsResponse,
  ContactState,
  Id,
  type ContactInfo,
} from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey, parseAdminKey } from '@latchkey/tokens';
import { apiSecret, dataDir, endpoints } from './config.ts';
import { EXIT, UsageError } from './usage.ts';

type Out = (line: string) => void;

export interface AdminFlags {
  data?: string | undefined;
  relay?: string | undefined;
  keys?: string | undefined;
}

interface Target {
  relay: string;
  keys: string;
  authorization: string;
}

const TIMEOUT_MS = 15_000;

/** Exit code of a kick or transfer applied on both sides whose key rotation is still pending. */
export const EXIT_PENDING = 4;

const PENDING = '(pending: key rotation waits for the key manager)';

export async function target(flags: AdminFlags): Promise<Target> {
  const dir = dataDir(flags.data);
  const ep = await endpoints(flags, dir);
  const text = process.env.LATCHKEY_ADMIN_KEY;
  let key;
  if (text) {
    try {
      key = parseAdminKey(text);
    } catch (err) {
      throw new UsageError(`LATCHKEY_ADMIN_KEY: ${err instanceof Error ? err.message : 'invalid'}`);
    }
  } else key = deriveAdminKey(await apiSecret(dir));
  // The relay serves its admin API on the WebSocket's port, over HTTP(S).
  const relay = ep.relay.replace(/^ws(s?):/, 'http$1:').replace(/\/+$/, '');
  return { relay, keys: ep.keys.replace(/\/+$/, ''), authorization: adminAuthorization(key) };
}

function id(value: string | undefined, flag: string): string {
  if (value === undefined) throw new UsageError(`${flag} is required`);
  if (!Id.safeParse(value).success) throw new UsageError(`${flag} must be 1-64 of [A-Za-z0-9_-]`);
  return value;
}

/**
 * One admin call.
 * @throws LatchkeyError with the server's code, or UNAVAILABLE/TIMEOUT when it cannot be reached.
 */
export async function call(
  base: string,
  path: string,
  authorization: string,
  body?: unknown,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        authorization,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError')
      throw new LatchkeyError('TIMEOUT', 'no answer');
    // Refused: the request never left. Anything else (reset, closed): it may have been served.
    const cause = err instanceof Error ? (err.cause as { code?: unknown } | undefined) : undefined;
    if (cause?.code === 'ECONNREFUSED') throw new LatchkeyError('UNAVAILABLE', 'cannot connect');
    throw new LatchkeyError('UNAVAILABLE', 'connection lost', { cause: err });
  }
  const json = (await res.json().catch(() => undefined)) as unknown;
  if (!res.ok) {
    const e = ErrorResponse.safeParse(json);
    if (e.success) throw new LatchkeyError(e.data.error.code, e.data.error.message);
    throw new LatchkeyError(res.status === 404 ? 'NOT_FOUND' : 'UNAVAILABLE', `HTTP ${res.status}`);
  }
  return json;
}

/**
 * What a failed key service call applied: an error answer or a refused connection, nothing
 * (each change is one transaction there); a lost connection or no answer, not known.
 */
function keyServiceFailed(err: unknown): LatchkeyError {
  const e = LatchkeyError.is(err) ? err : new LatchkeyError('INTERNAL', 'unexpected answer');
  const unknown =
    e.code === 'TIMEOUT' || (e.code === 'UNAVAILABLE' && e.message === 'connection lost');
  return new LatchkeyError(
    e.code,
    `key service: ${e.message} ${unknown ? '(not known whether applied; run the command again)' : '(nothing applied)'}`,
  );
}

/**
 * Like `moderate`, with the answer schema of the action (shred): key service first, then relay,
 * naming the side that failed.
 */
export async function moderateOrder<T>(
  t: Target,
  path: string,
  body: unknown,
  schema: { parse(v: unknown): T },
): Promise<{ keys: T; relay: T }> {
  let keys: T;
  try {
    keys = schema.parse(await call(t.keys, path, t.authorization, body));
  } catch (err) {
    throw keyServiceFailed(err);
  }
  try {
    return { keys, relay: schema.parse(await call(t.relay, path, t.authorization, body)) };
  } catch (err) {
    const e = LatchkeyError.is(err) ? err : new LatchkeyError('INTERNAL', 'unexpected answer');
    throw new LatchkeyError(
      e.code,
      `relay: ${e.message} (already applied on the key service; run the command again)`,
    );
  }
}

/** The key service's answer: a ContactResponse, `rotationPending` true when the rotation waits. */
interface KeysAnswer extends Omit<ContactResponse, 'rotationPending'> {
  rotationPending: boolean;
}

function keysAnswer(json: unknown): KeysAnswer {
  const parsed = ContactResponse.parse(json);
  return { ...parsed, rotationPending: parsed.rotationPending === true };
}

/**
 * Applies an action on the key service, then on the relay, naming the side that failed and
 * what was applied. Both are idempotent: running the command again completes it.
 */
async function moderate(
  t: Target,
  path: string,
  body: unknown,
): Promise<{ keys: KeysAnswer; relay: ContactResponse }> {
  let keys: KeysAnswer;
  try {
    keys = keysAnswer(await call(t.keys, path, t.authorization, body));
  } catch (err) {
    throw keyServiceFailed(err);
  }
  try {
    return { keys, relay: ContactResponse.parse(await call(t.relay, path, t.authorization, body)) };
  } catch (err) {
    const e = LatchkeyError.is(err) ? err : new LatchkeyError('INTERNAL', 'unexpected answer');
    const state = keys.rotationPending
      ? ', key rotation pending'
      : keys.rotatedEpoch === undefined
        ? ''
        : `, key rotated to epoch ${keys.rotatedEpoch}`;
    throw new LatchkeyError(
      e.code,
      `relay: ${e.message} (already applied on the key service${state}; run the command again)`,
    );
  }
}

/** The suffix of a kick or transfer line: rotated, pending, or nothing to rotate. */
const rotated = (r: KeysAnswer): string =>
  r.rotationPending
    ? ` ${PENDING}`
    : r.rotatedEpoch === undefined
      ? ''
      : ` (key rotated to epoch ${r.rotatedEpoch})`;

function formatContact(c: ContactInfo): string {
  const people = c.participants
    .map((p) => `${p.participantId}:${p.role ?? '-'}:${p.state}`)
    .join(',');
  return `${c.contactId} ${c.state} expires=${new Date(c.expiresAt).toISOString()} participants=${people || '-'}`;
}

export interface ContactsFlags extends AdminFlags {
  state?: string | undefined;
  json?: boolean | undefined;
}

/** `latchkey contacts`: every contact the relay knows, with state and participants. */
export async function contacts(flags: ContactsFlags, out: Out): Promise<number> {
  if (flags.state !== undefined && !ContactState.safeParse(flags.state).success) {
    throw new UsageError('--state must be open, closed or expired');
  }
  const t = await target(flags);
  let after: string | undefined;
  do {
    const q = new URLSearchParams({
      limit: '500',
      ...(flags.state ? { state: flags.state } : {}),
      ...(after ? { after } : {}),
    });
    const page = ListContactsResponse.parse(
      await call(t.relay, `${ADMIN_PATHS.contacts}?${q.toString()}`, t.authorization),
    );
    for (const c of page.contacts) out(flags.json ? JSON.stringify(c) : formatContact(c));
    after = page.next;
  } while (after !== undefined);
  return EXIT.ok;
}

export interface ContactFlags extends AdminFlags {
  contact?: string | undefined;
}

/** `latchkey close --contact ID` */
export async function close(flags: ContactFlags, out: Out): Promise<number> {
  const contactId = id(flags.contact, '--contact');
  await moderate(await target(flags), ADMIN_PATHS.close(contactId), {});
  out(`closed ${contactId}`);
  return EXIT.ok;
}

export interface KickFlags extends ContactFlags {
  participant?: string | undefined;
}

/** `latchkey kick --contact ID --participant ID` */
export async function kick(flags: KickFlags, out: Out): Promise<number> {
  const contactId = id(flags.contact, '--contact');
  const participantId = id(flags.participant, '--participant');
  const r = await moderate(await target(flags), ADMIN_PATHS.kick(contactId), { participantId });
  out(`kicked ${participantId} from ${contactId}${rotated(r.keys)}`);
  return r.keys.rotationPending ? EXIT_PENDING : EXIT.ok;
}

export interface TransferFlags extends ContactFlags {
  from?: string | undefined;
  to?: string | undefined;
}

/** `latchkey transfer --contact ID --from AGENT --to AGENT` */
export async function transfer(flags: TransferFlags, out: Out): Promise<number> {
  const contactId = id(flags.contact, '--contact');
  const from = id(flags.from, '--from');
  const to = id(flags.to, '--to');
  if (from === to) throw new UsageError('--from and --to must differ');
  const r = await moderate(await target(flags), ADMIN_PATHS.transfer(contactId), { from, to });
  out(`transferred ${contactId} from ${from} to ${to}${rotated(r.keys)}`);
  return r.keys.rotationPending ? EXIT_PENDING : EXIT.ok;
}

export interface InviteFlags extends KickFlags {
  role?: string | undefined;
}

/** `latchkey invite --contact ID --participant ID --role agent|supervisor` */
export async function invite(flags: InviteFlags, out: Out): Promise<number> {
  const contactId = id(flags.contact, '--contact');
  const participantId = id(flags.participant, '--participant');
  const body = InviteRequest.safeParse({ participantId, role: flags.role });
  if (!body.success) throw new UsageError('--role must be agent or supervisor');
  await moderate(await target(flags), ADMIN_PATHS.invite(contactId), body.data);
  out(`invited ${participantId} to ${contactId} as ${body.data.role}`);
  return EXIT.ok;
}
