/**
 * A verdict counts only from a scanner (docs/threat-model.md "The scanner"): a visitor running a
 * modified client that skips the SDK's own refusal seals a `clean` verdict on its own file before
 * the scanner looks (readers wait for a scan: `scanning`). The relay stores it (it cannot read it), but every reader checks the sender's
 * certified role and refuses it: the file stays blocked until the scanner's own verdict, and the forged verdict
 * shows as refused.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ChatMessage, FailedMessage } from '@latchkey/client';
import type { Role } from '@latchkey/protocol';
import type * as TokenClaims from '../../packages/client/src/token-claims.ts';
import { startStack, until, type Stack } from './harness.ts';

type TokenClaimsModule = typeof TokenClaims;

/** The modified client: after connecting, it believes its visitor token names a scanner. */
const forged = vi.hoisted(() => ({ on: false }));
vi.mock('../../packages/client/src/token-claims.ts', async (importOriginal) => {
  const real = await importOriginal<TokenClaimsModule>();
  return {
    tokenClaims: (token: string) => {
      const id = real.tokenClaims(token);
      if (!id || id.participantId !== 'mallory') return id;
      const role: Role = id.role;
      return {
        contactId: id.contactId,
        participantId: id.participantId,
        get role(): Role {
          return forged.on ? 'scanner' : role;
        },
      };
    },
  };
});

let stack: Stack;
beforeEach(async () => {
  stack = await startStack();
});
afterEach(async () => {
  await stack.close();
});

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('a forged verdict', () => {
  it('from a visitor is refused by readers: the infected file stays blocked', async () => {
    const contact = 'c-forged';
    const mallory = await stack.client(await stack.token(contact, 'mallory', 'visitor'));
    const agent = await stack.client(await stack.token(contact, 'a1', 'agent'), {
      scanning: true,
    });
    const scanner = await stack.client(await stack.token(contact, 'scan1', 'scanner'));
    const got: ChatMessage[] = [];
    const refused: FailedMessage[] = [];
    const scans: unknown[] = [];
    agent.on('message', (m) => got.push(m));
    agent.on('failed', (m) => refused.push(m));
    agent.on('scan', (u) => scans.push(u));

    const data = new TextEncoder().encode('not really malware, but the scanner will say so');
    const sent = await mallory.sendFile(new Blob([data]));
    await until(() => got.some((m) => m.seq === sent.seq), 10_000, 'the file message');
    const file = got.find((m) => m.seq === sent.seq)!;
    expect(file.file?.scan).toBe('pending');

    // The attack: before the scanner looks, the modified client seals a `clean` verdict under
    // its visitor certificate, hoping readers open the file without a scan.
    forged.on = true;
    const forgedSend = await mallory.sendVerdict({
      ref: file.msgId,
      sha256: sha256(data),
      verdict: 'clean',
    });
    forged.on = false;
    await until(() => refused.some((m) => m.seq === forgedSend.seq), 10_000, 'the forged verdict');
    expect(refused.find((m) => m.seq === forgedSend.seq)?.code).toBe('FORBIDDEN');
    expect(scans).toHaveLength(0);
    expect(() => agent.openFile(sent.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));

    // The scanner's own verdict counts.
    await until(() => scanner.lastSeq >= forgedSend.seq, 10_000, 'the scanner caught up');
    await scanner.history(0);
    await scanner.sendVerdict({
      ref: file.msgId,
      sha256: sha256(data),
      verdict: 'infected',
      signature: 'Latchkey.Test.Sig',
    });
    await until(() => scans.length === 1, 10_000, 'the scanner verdict');
    expect(() => agent.openFile(sent.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
    const history = await agent.history(0);
    const entry = history.find((e) => e.seq === sent.seq);
    expect(entry?.ok && entry.file?.scan).toBe('infected');
    expect(history.find((e) => e.seq === forgedSend.seq)).toMatchObject({
      ok: false,
      code: 'FORBIDDEN',
    });
  });
});
