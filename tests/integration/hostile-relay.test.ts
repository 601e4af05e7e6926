/**
 * Adversarial tests of issue 13 at the SDK (docs/threat-model.md): a relay in the middle
 * (mitm-relay.ts) that replays, reorders, drops, truncates, forks, suppresses `rekey`, lies in
 * `ready` and injects frames, and a removed member that kept every key and certificate it had.
 * Each attack here succeeded against the client before the transcript checks and epoch statements
 * existed (the tools' self-test showed it on that code); now each is caught and shown as the
 * right state, never as normal text.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromBase64Url } from '@latchkey/crypto/codec';
import { openEnvelope } from '@latchkey/crypto/envelope';
import {
  cryptoHeader,
  type ChatMessage,
  type FailedMessage,
  type LatchkeyClient,
} from '@latchkey/client';
import { ADMIN_PATHS, LatchkeyError, type SealedEnvelope } from '@latchkey/protocol';
import { adminAuthorization, deriveAdminKey } from '@latchkey/tokens';
import { startStack, until, type Stack } from './harness.ts';
import { forge, insider } from './insider.ts';
import { act, startMitmRelay, type Envelope, type MitmRelay } from './mitm-relay.ts';

let stack: Stack;
let mitm: MitmRelay;
beforeEach(async () => {
  stack = await startStack();
  mitm = await startMitmRelay(stack.relayUrl);
});
afterEach(async () => {
  await mitm.close();
  await stack.close();
});

interface Seen {
  messages: ChatMessage[];
  failed: FailedMessage[];
  /** seq -> what was shown: the text, or `!CODE` / `!INTEGRITY:CHECK`. */
  shown: Map<number, string>;
}

function watch(client: LatchkeyClient): Seen {
  const s: Seen = { messages: [], failed: [], shown: new Map() };
  client.on('message', (m) => {
    s.messages.push(m);
    s.shown.set(m.seq, m.text);
  });
  client.on('failed', (f) => {
    s.failed.push(f);
    s.shown.set(f.seq, f.code === 'INTEGRITY' ? `!INTEGRITY:${f.integrity ?? ''}` : `!${f.code}`);
  });
  return s;
}

const history = async (c: LatchkeyClient): Promise<[number, string][]> =>
  (await c.history()).map((h) => [
    h.seq,
    h.ok ? h.text : h.code === 'INTEGRITY' ? `!INTEGRITY:${h.integrity ?? ''}` : `!${h.code}`,
  ]);

async function visitor(
  contact: string,
  texts: string[] = [],
  viaMitm = false,
): Promise<LatchkeyClient> {
  const v = await stack.client(
    await stack.token(contact, 'v1', 'visitor'),
    viaMitm ? { relayUrl: mitm.url } : {},
  );
  for (const t of texts) await v.send(t);
  return v;
}

async function agent(
  contact: string,
  participant = 'a1',
  opts: Parameters<Stack['client']>[1] = {},
): Promise<LatchkeyClient> {
  return stack.client(await stack.token(contact, participant, 'agent'), {
    relayUrl: mitm.url,
    ...opts,
  });
}

/** Kicks a participant as `latchkey kick` does: key service first (rotates), then the relay. */
async function kick(contact: string, participantId: string): Promise<void> {
  const authorization = adminAuthorization(deriveAdminKey(stack.secret));
  for (const base of [stack.keysUrl, stack.relayUrl.replace(/^ws/, 'http')]) {
    const res = await fetch(`${base}${ADMIN_PATHS.kick(contact)}`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ participantId }),
    });
    const body = await res.text();
    if (!res.ok) throw new Error(`kick at ${base}: ${res.status} ${body}`);
  }
}

/** Whether `key` opens the stored envelope (signature and AES-GCM). */
async function opens(env: Envelope, key: Uint8Array, verifyKey: Uint8Array): Promise<boolean> {
  const e = env as unknown as SealedEnvelope;
  try {
    await openEnvelope({
      key,
      header: cryptoHeader(e),
      nonce: fromBase64Url(e.nonce),
      ciphertext: fromBase64Url(e.ciphertext),
      sig: fromBase64Url(e.sig),
      verifyKey,
    });
    return true;
  } catch {
    return false;
  }
}

describe('a relay that rewrites history is caught', () => {
  it('a replayed envelope shows as REPLAYED, never as the message again (live and in history)', async () => {
    await visitor('c-replay', ['please refund', 'thanks']);
    const a = await agent('c-replay');
    const seen = watch(a);
    await until(() => seen.shown.size === 2, 5000, 'history');
    expect(mitm.replay(1, { asSeq: 3 })).toBe(1);
    await until(() => seen.shown.size === 3, 5000, 'replayed delivery');
    expect(seen.shown.get(3)).toBe('!INTEGRITY:REPLAYED');
    expect(seen.messages.map((m) => m.text)).toEqual(['please refund', 'thanks']);
    expect(seen.failed[0]).toMatchObject({
      seq: 3,
      code: 'INTEGRITY',
      integrity: 'REPLAYED',
      senderId: 'v1',
    });
    expect(seen.failed[0]?.text).toBeUndefined();
    mitm.serveHistory(() => ({
      envelopes: [mitm.envelope(1), mitm.envelope(2), { ...mitm.envelope(1), seq: 3 }],
    }));
    expect(await history(a)).toEqual([
      [1, 'please refund'],
      [2, 'thanks'],
      [3, '!INTEGRITY:REPLAYED'],
    ]);
  });

  it('two messages of one sender swapped: both REORDERED, neither shown as normal text', async () => {
    const v = await visitor('c-swap');
    const a = await agent('c-swap');
    const seen = watch(a);
    mitm.swapSeqs(1, 2);
    await v.send('please refund');
    await v.send('do not refund');
    await until(() => seen.shown.size === 2, 5000, 'swapped deliveries');
    expect(seen.messages).toEqual([]);
    // Live too: the first waits a moment for what seems missing before it, and it comes.
    expect(seen.failed.map((f) => f.integrity)).toEqual(['REORDERED', 'REORDERED']);
    expect(await history(a)).toEqual([
      [1, '!INTEGRITY:REORDERED'],
      [2, '!INTEGRITY:REORDERED'],
    ]);
  });

  it('a message deleted with the rest renumbered: MISSING with the count', async () => {
    const v = await visitor('c-renum', ['m1', 'm2', 'm3']);
    mitm.renumberAfterDrop(2);
    const a = await agent('c-renum');
    const seen = watch(a);
    await until(() => seen.shown.size === 2, 5000, 'renumbered replay');
    expect(seen.shown.get(1)).toBe('m1');
    expect(seen.shown.get(2)).toBe('!INTEGRITY:MISSING');
    expect(seen.failed[0]).toMatchObject({ seq: 2, integrity: 'MISSING', missing: 1, text: 'm3' });
    await v.send('m4');
    await until(() => seen.shown.size === 3, 5000, 'renumbered live delivery');
    expect(await history(a)).toEqual([
      [1, 'm1'],
      [2, '!INTEGRITY:MISSING'],
      [3, '!INTEGRITY:MISSING'],
    ]);
  });

  it('a cut tail is caught as soon as a member speaks again', async () => {
    const v = await visitor('c-cut', ['m1', 'm2', 'm3', 'm4']);
    // The relay hides 3 and 4 from the agent and numbers what follows on from 2.
    mitm.rewriteEnvelopes(
      (env) => {
        const seq = env.seq ?? 0;
        return seq === 3 || seq === 4 ? null : seq > 4 ? { ...env, seq: seq - 2 } : undefined;
      },
      {
        heads: (head) => (head > 4 ? head - 2 : Math.min(head, 2)),
      },
    );
    const a = await agent('c-cut');
    const seen = watch(a);
    await until(() => seen.shown.size === 2, 5000, 'cut replay');
    expect([...seen.shown.values()]).toEqual(['m1', 'm2']); // nothing to see yet: the documented limit
    await v.send('m5');
    await until(() => seen.shown.size === 3, 5000, 'next message');
    expect(seen.failed[0]).toMatchObject({ seq: 3, integrity: 'MISSING', missing: 2 });
  });

  it('a forked history (another envelope at a seq for one member) is FORKED when that member speaks', async () => {
    const v = await visitor('c-fork', ['m1', 'm2'], false);
    const vSeen = watch(v);
    // The agent is shown the first envelope again in place of the second.
    mitm.rewriteEnvelopes((env) => (env.seq === 2 ? { ...mitm.envelope(1), seq: 2 } : undefined));
    const a = await agent('c-fork');
    const seen = watch(a);
    await until(() => seen.shown.size === 2, 5000, 'forked replay');
    expect(seen.shown.get(2)).toBe('!INTEGRITY:REPLAYED');
    await a.send('ok, refunded');
    await until(() => vSeen.shown.get(3) !== undefined, 5000, 'agent reply');
    expect(vSeen.shown.get(3)).toBe('!INTEGRITY:FORKED');
  });

  it('a relay that names another identity in ready is refused (INTEGRITY), never believed', async () => {
    mitm.toClient((f) =>
      f.type === 'ready' ? { ...f, participantId: 'v1', role: 'visitor' } : undefined,
    );
    const err = await agent('c-ready').catch((e: unknown) => e);
    expect(LatchkeyError.is(err, 'INTEGRITY')).toBe(true);
  });

  it('an event fired while connect() is pending reaches a listener added after it resolved', async () => {
    await visitor('c-early', ['m1']);
    // The join replay carries a tampered envelope and arrives before `joined`.
    mitm.rewriteEnvelopes((env) => ({
      ...env,
      ciphertext: `${String(env.ciphertext).slice(0, -2)}AA`,
    }));
    mitm.toClient((f) => (f.type === 'joined' ? act.delay(100) : undefined));
    const a = await agent('c-early');
    const failed: FailedMessage[] = [];
    a.on('failed', (f) => failed.push(f));
    await until(() => failed.length === 1, 5000, 'early failed event');
    expect(failed[0]).toMatchObject({ seq: 1, code: 'DECRYPT_FAILED' });
  });
});

describe('a removed member reads nothing sent after its removal', () => {
  it('even when the relay suppresses every rekey: the statement ages out and the next seal uses the new epoch', async () => {
    let skew = 0;
    const now = (): number => Date.now() + skew;
    const v = await stack.client(await stack.token('c-kick', 'v1', 'visitor'), {
      relayUrl: mitm.url,
      now,
    });
    const a1 = await agent('c-kick', 'a1', { now });
    const gone = await insider(stack, 'c-kick', 'a2');
    const vSeen = watch(v);
    mitm.suppressAll('rekey');
    await a1.send('before');
    await kick('c-kick', 'a2');
    // Within the documented window (FRESHNESS.maxAgeMs) members may still seal under epoch 0;
    // past it they ask the key service first, whatever the relay did with the notice.
    skew = 11_000;
    await a1.send('after the kick');
    await v.send('visitor after the kick');
    await until(() => vSeen.shown.size === 3, 5000, 'messages');
    const stored = mitm.envelopes('c-kick');
    const after = stored.filter((e) => (e.seq ?? 0) >= 2);
    expect(after.map((e) => e.epoch)).toEqual([1, 1]);
    for (const env of after)
      expect(await opens(env, gone.key, senderKey(env as unknown as SealedEnvelope))).toBe(false);
    expect(a1.epoch).toBe(1);
    expect(v.epoch).toBe(1);
  });

  it('when a member was offline during the kick and comes back', async () => {
    const a1 = await agent('c-off', 'a1');
    const gone = await insider(stack, 'c-off', 'a2');
    const conn = await mitm.waitForConnection((c) => c.participantId === 'a1');
    mitm.acceptConnections(false);
    conn.kill();
    await until(() => a1.state === 'reconnecting', 5000, 'offline');
    await kick('c-off', 'a2');
    mitm.acceptConnections(true);
    await until(() => a1.state === 'connected', 10_000, 'back');
    await a1.send('after');
    expect(a1.epoch).toBe(1);
    const sent = mitm.seen.filter((e) => e.dir === 'toRelay' && e.frame?.type === 'send').at(-1)
      ?.frame?.envelope as SealedEnvelope;
    expect(sent.epoch).toBe(1);
    expect(await opens(sent as unknown as Envelope, gone.key, senderKey(sent))).toBe(false);
  });

  it('messages a colluding relay injects in its name after the removal are SENDER_REMOVED', async () => {
    let skew = 0;
    const v = await visitor('c-forge', [], true);
    const vClock = (): number => Date.now() + skew;
    const v2 = await stack.client(await stack.token('c-forge', 'v1', 'visitor'), {
      relayUrl: mitm.url,
      now: vClock,
    });
    v.close();
    const vSeen = watch(v2);
    const gone = await insider(stack, 'c-forge', 'a2');
    const gone2 = await insider(stack, 'c-forge', 'a2'); // a second session it kept
    await v2.send('hello');
    await kick('c-forge', 'a2');
    await until(() => v2.epoch === 1, 5000, 'visitor learns the rotation');
    const conn = await mitm.waitForConnection((c) => c.participantId === 'v1' && c.open);
    // Signed now, after the removal: forged by its sentAt.
    conn.sendToClient({
      v: 1,
      type: 'deliver',
      envelope: { ...(await forge(gone, 'refund to IBAN X', Date.now())), seq: 2 },
    });
    await until(() => vSeen.shown.size === 2, 5000, 'injected');
    expect(vSeen.shown.get(2)).toBe('!INTEGRITY:SENDER_REMOVED');
    // Backdated to before the removal, delivered live well after it: forged all the same.
    skew = 60_000;
    conn.sendToClient({
      v: 1,
      type: 'deliver',
      envelope: { ...(await forge(gone2, 'backdated', Date.now() - 5_000)), seq: 3 },
    });
    await until(() => vSeen.shown.size === 3, 5000, 'backdated');
    expect(vSeen.shown.get(3)).toBe('!INTEGRITY:SENDER_REMOVED');
    expect(vSeen.messages.map((m) => m.text)).toEqual(['hello']);
  });
});

describe('epochs come from the key service, not the relay', () => {
  it('a transfer with every rekey suppressed: the newcomer and the others seal under the new epoch, the leaver opens nothing', async () => {
    let skew = 0;
    const now = (): number => Date.now() + skew;
    const v = await stack.client(await stack.token('c-transfer', 'v1', 'visitor'), {
      relayUrl: mitm.url,
      now,
    });
    const leaver = await insider(stack, 'c-transfer', 'a1');
    mitm.suppressAll('rekey');
    const authorization = adminAuthorization(deriveAdminKey(stack.secret));
    for (const base of [stack.keysUrl, stack.relayUrl.replace(/^ws/, 'http')]) {
      const res = await fetch(`${base}${ADMIN_PATHS.transfer('c-transfer')}`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ from: 'a1', to: 'a3' }),
      });
      expect(res.status, await res.text()).toBe(200);
    }
    skew = 11_000;
    const newcomer = await agent('c-transfer', 'a3', { now });
    await newcomer.send('I take over from here');
    await v.send('thanks');
    const sent = mitm.seen
      .filter((e) => e.dir === 'toRelay' && e.frame?.type === 'send')
      .map((e) => e.frame?.envelope as SealedEnvelope);
    expect(sent.map((e) => e.epoch)).toEqual([1, 1]);
    for (const env of sent)
      expect(await opens(env as unknown as Envelope, leaver.key, senderKey(env))).toBe(false);
  });

  it('a member that keeps sealing under a superseded epoch is shown as STALE_EPOCH', async () => {
    let skew = 0;
    const v = await stack.client(await stack.token('c-stale', 'v1', 'visitor'), {
      relayUrl: mitm.url,
      now: () => Date.now() + skew,
    });
    const seen = watch(v);
    const stale = await insider(stack, 'c-stale', 'a1'); // a member whose client never moves on
    await kick('c-stale', 'a2');
    await until(() => v.epoch === 1, 5000, 'visitor learns the rotation');
    skew = 60_000;
    const conn = await mitm.waitForConnection((c) => c.participantId === 'v1' && c.open);
    conn.sendToClient({
      v: 1,
      type: 'deliver',
      envelope: { ...(await forge(stale, 'old key', Date.now() + 45_000)), seq: 1 },
    });
    await until(() => seen.shown.size === 1, 5000, 'delivered');
    expect(seen.shown.get(1)).toBe('!INTEGRITY:STALE_EPOCH');
  });
});

describe('signatures have freshness', () => {
  it('an expired certificate signing a backdated message, delivered live, is CLOCK', async () => {
    let skew = 0;
    const v = await stack.client(await stack.token('c-clock', 'v1', 'visitor'), {
      relayUrl: mitm.url,
      now: () => Date.now() + skew,
    });
    const seen = watch(v);
    const short = await insider(stack, 'c-clock', 'a1', 2); // certificate valid for 2 s
    const conn = await mitm.waitForConnection((c) => c.participantId === 'v1' && c.open);
    skew = 120_000; // the receiver's clock: two minutes later
    conn.sendToClient({
      v: 1,
      type: 'deliver',
      envelope: { ...(await forge(short, 'backdated', Date.now())), seq: 1 },
    });
    await until(() => seen.shown.size === 1, 5000, 'delivered');
    expect(seen.shown.get(1)).toBe('!INTEGRITY:CLOCK');
  });

  it('a sentAt in the receiver future is CLOCK', async () => {
    const v = await visitor('c-future', [], true);
    const seen = watch(v);
    const a = await insider(stack, 'c-future', 'a1');
    const conn = await mitm.waitForConnection((c) => c.participantId === 'v1' && c.open);
    conn.sendToClient({
      v: 1,
      type: 'deliver',
      envelope: { ...(await forge(a, 'from the future', Date.now() + 120_000)), seq: 1 },
    });
    await until(() => seen.shown.size === 1, 5000, 'delivered');
    expect(seen.shown.get(1)).toBe('!INTEGRITY:CLOCK');
  });
});

/** The sender's certified session key of an envelope (from its certificate body). */
function senderKey(env: SealedEnvelope): Uint8Array {
  const body = JSON.parse(Buffer.from(env.cert.body, 'base64url').toString('utf8')) as {
    publicKey: string;
  };
  return fromBase64Url(body.publicKey);
}
