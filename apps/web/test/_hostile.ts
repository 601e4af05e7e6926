/**
 * A hostile relay for the browser tests (docs/threat-model.md "Relay operator", "A departed
 * participant"): the real relay and key service, the man-in-the-middle proxy of the integration
 * tests (tests/integration/mitm-relay.ts) in front of the relay, and the web server handing
 * browsers the proxy's URL as the relay. Every browser socket goes through the proxy; rules here
 * target one contact and one side only, so each attack hits exactly the view under test.
 *
 * Also the tools of a participant that was kicked but kept its key, certificate and session key
 * (as `insider()`/`forge()` in tests/integration/hostile-relay.test.ts), and the admin kick.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openKeyService } from '@latchkey/keyd';
import { ADMIN_PATHS, type Role } from '@latchkey/protocol';
import { startRelay } from '@latchkey/relay-app';
import { adminAuthorization, deriveAdminKey, mintToken } from '@latchkey/tokens';
import {
  startMitmRelay,
  type Envelope,
  type Frame,
  type MitmConnection,
  type MitmRelay,
  type Rule,
} from '../../../tests/integration/mitm-relay.ts';
import { startWeb, type RunningWeb } from '../src/index.ts';

export interface HostileStack {
  /** The real relay (admin API, and what the proxy forwards to). */
  relayUrl: string;
  keysUrl: string;
  /** Between every browser and the relay: the URL the web app's sessions carry. */
  mitm: MitmRelay;
  web: RunningWeb;
  token(contactId: string, participantId: string, role: Role, ttlSeconds?: number): Promise<string>;
  /** Kicks a participant as `latchkey kick` does: key service first (rotates), then the relay. */
  kick(contactId: string, participantId: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHostileStack(): Promise<HostileStack> {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-web-hostile-'));
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const masterKey = crypto.getRandomValues(new Uint8Array(32));
  const keys = await openKeyService({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    masterKey,
  });
  const relay = await startRelay({ dataDir: dir, host: '127.0.0.1', port: 0, apiSecret: secret });
  const mitm = await startMitmRelay(relay.url);
  const web = await startWeb({
    host: '127.0.0.1',
    port: 0,
    apiSecret: secret,
    relayUrl: mitm.url,
    keysUrl: keys.url,
    serviceKey: keys.servicePublicKey,
  });
  return {
    relayUrl: relay.url,
    keysUrl: keys.url,
    mitm,
    web,
    token: (contactId, participantId, role, ttlSeconds = 600) =>
      mintToken(secret, { contactId, participantId, role, ttlSeconds }),
    async kick(contactId, participantId) {
      const authorization = adminAuthorization(deriveAdminKey(secret));
      for (const base of [keys.url, relay.url.replace(/^ws/, 'http')]) {
        const res = await fetch(`${base}${ADMIN_PATHS.kick(contactId)}`, {
          method: 'POST',
          headers: { authorization, 'content-type': 'application/json' },
          body: JSON.stringify({ participantId }),
        });
        const body = await res.text();
        if (!res.ok) throw new Error(`kick at ${base}: ${res.status} ${body}`);
      }
    },
    async close() {
      await web.close();
      await mitm.close();
      await relay.close();
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Which proxied connections a rule touches. */
export type ConnFilter = (c: MitmConnection) => boolean;

/** The connections of one contact's participant with `role` (known once the relay's `ready` passed). */
export const side =
  (contactId: string, role: Role): ConnFilter =>
  (c) =>
    c.contactId === contactId && c.role === role;

const deliverOf = (f: Frame): Envelope | null =>
  f.type === 'deliver' && typeof f.envelope === 'object' && f.envelope !== null
    ? (f.envelope as Envelope)
    : null;

/**
 * Live deliveries to `only`: the envelope at `seq` is hidden and every later one renumbered
 * down by one, so that the numbering shows no hole (mitm `renumberAfterDrop`, for one side).
 */
export function renumberAfterDrop(mitm: MitmRelay, seq: number, only: ConnFilter): Rule {
  return mitm.rewriteEnvelopes(
    (env, ctx) => {
      if (!only(ctx.conn) || typeof env.seq !== 'number' || env.seq < seq) return undefined;
      return env.seq === seq ? null : { ...env, seq: env.seq - 1 };
    },
    {
      heads: (h, c) => (only(c) && h >= seq ? h - 1 : h),
      since: (s, c) => (only(c) && s >= seq ? s + 1 : s),
    },
  );
}

/**
 * Live deliveries to `only`: the envelopes at `a` and `b` (a < b) swap places: `a` is held until
 * `b` arrives, then b's envelope goes out labelled `a` and a's labelled `b` (mitm `swapSeqs`,
 * for one side).
 */
export function swapSeqs(mitm: MitmRelay, a: number, b: number, only: ConnFilter): Rule {
  const held = new Map<MitmConnection, { frame: Frame; between: Frame[] }>();
  return mitm.toClient((frame, conn) => {
    const env = deliverOf(frame);
    if (!env || !only(conn)) return undefined;
    const h = held.get(conn);
    if (!h) {
      if (env.seq !== a) return undefined;
      held.set(conn, { frame, between: [] });
      return 'drop';
    }
    if (env.seq !== b) {
      h.between.push(frame);
      return 'drop';
    }
    held.delete(conn);
    const first = deliverOf(h.frame)!;
    return [
      { ...frame, envelope: { ...env, seq: a } },
      ...h.between,
      { ...h.frame, envelope: { ...first, seq: b } },
    ];
  });
}

export { forge, insider, type Insider } from '../../../tests/integration/insider.ts';
