/**
 * Post-quantum hybrid key delivery (issue 10): content keys travel from the key service sealed
 * with HPKE to each client's per-session key, X25519 by default or X-Wing (X25519 + ML-KEM-768);
 * the relay and stored envelopes are unchanged. A plain key where a sealed one was asked for,
 * or a sealed key meant for someone else, is refused.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ChatMessage, FetchLike } from '@latchkey/client';
import { LatchkeyError } from '@latchkey/protocol';
import { startStack, until, type Stack } from './harness.ts';

let stack: Stack;
beforeEach(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await stack.close();
});

/** A fetch that records the key service's answers, optionally rewriting them. */
function recordingFetch(
  seen: unknown[],
  rewrite?: (body: Record<string, unknown>) => Promise<Record<string, unknown>>,
): FetchLike {
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!String(input).endsWith('/v1/contact-key') || !res.ok) return res;
    let body = (await res.json()) as Record<string, unknown>;
    if (rewrite) body = await rewrite(body);
    seen.push(body);
    return new Response(JSON.stringify(body), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    });
  };
}

describe('key delivery with HPKE', () => {
  it('seals every key to the session (X25519 by default, X-Wing on request) and the chat works across both', async () => {
    const seenV: unknown[] = [];
    const seenA: unknown[] = [];
    const visitor = await stack.client(await stack.token('kd-1', 'v1'), {
      fetch: recordingFetch(seenV),
    });
    const agent = await stack.client(await stack.token('kd-1', 'a1', 'agent'), {
      fetch: recordingFetch(seenA),
      keyDelivery: 'xwing',
    });
    const got: ChatMessage[] = [];
    agent.on('message', (m) => got.push(m));
    await visitor.send('sealed both ways');
    await until(() => got.length === 1);
    expect(got[0]?.text).toBe('sealed both ways');
    expect(visitor.fingerprint()).toBe(agent.fingerprint());

    expect(seenV[0]).not.toHaveProperty('key');
    expect(seenV[0]).toMatchObject({ sealedKey: { suite: 'x25519' } });
    expect(
      Buffer.from((seenV[0] as { sealedKey: { enc: string } }).sealedKey.enc, 'base64url'),
    ).toHaveLength(32);
    expect(seenA[0]).not.toHaveProperty('key');
    expect(seenA[0]).toMatchObject({ sealedKey: { suite: 'xwing' } });
    expect(
      Buffer.from((seenA[0] as { sealedKey: { enc: string } }).sealedKey.enc, 'base64url'),
    ).toHaveLength(1120);
  });

  it('refuses a plain key where a sealed one was asked for (no downgrade)', async () => {
    const token = await stack.token('kd-2', 'v1');
    const downgrade = recordingFetch([], async (body) => {
      const plain = await fetch(new URL('/v1/contact-key', stack.keysUrl), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{}',
      });
      const { sealedKey: _s, ...rest } = body;
      return { ...rest, key: ((await plain.json()) as { key: string }).key };
    });
    await expect(stack.client(token, { fetch: downgrade })).rejects.toSatisfy((e) =>
      LatchkeyError.is(e, 'KEY_UNAVAILABLE'),
    );
  });

  it("refuses a sealed key meant for another participant's session", async () => {
    const other = await stack.token('kd-3', 'v2');
    // Someone hands v1 the sealed answer that was made for v2.
    const swap = recordingFetch([], async () => {
      const stolen: unknown[] = [];
      const c = await stack.client(other, { fetch: recordingFetch(stolen) });
      c.close();
      return stolen[0] as Record<string, unknown>;
    });
    await expect(stack.client(await stack.token('kd-3', 'v1'), { fetch: swap })).rejects.toSatisfy(
      (e) => LatchkeyError.is(e, 'KEY_UNAVAILABLE'),
    );
  });

  it('answers a malformed delivery key with BAD_REQUEST', async () => {
    const token = await stack.token('kd-4', 'v1');
    for (const delivery of [
      { suite: 'x25519', publicKey: Buffer.alloc(32).toString('base64url') }, // low-order point
      { suite: 'xwing', publicKey: Buffer.alloc(1216, 0xff).toString('base64url') },
      { suite: 'x25519', publicKey: 'short' },
      { suite: 'kyber', publicKey: Buffer.alloc(32, 9).toString('base64url') },
    ]) {
      const res = await fetch(new URL('/v1/contact-key', stack.keysUrl), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ delivery }),
      });
      expect(res.status, JSON.stringify(delivery)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
    }
  });
});
