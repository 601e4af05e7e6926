/**
 * The attachment scanner end to end (docs/operations.md "Scanning attachments", docs/threat-model.md
 * "The scanner"): a real relay and key service, the relay's signed webhooks delivered to the
 * scanner service (apps/scanner), a real clamd with the test's own signature database
 * (_clamd.ts), and clients of a visitor and an agent. The visitor sends an infected and a clean
 * file; the scanner joins the contact as role `scanner`, judges both with clamd and posts signed
 * verdicts; the agent's client (scanning on) sees `infected` with the signature's name and
 * `clean`, opens only the clean one, and nothing of the files reaches the scanner's logs. A
 * verdict sealed by a participant who is not a scanner is refused by readers and does not stop
 * the scanner from judging the file; text sealed under a scanner certificate is refused too; a
 * file whose ciphertext the relay altered is judged `error`, never `clean`.
 * Operations (clamd down, size limit, webhooks, idle, self-registration): scanner-operations.test.ts.
 */
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { chunkedCiphertextLength } from '@latchkey/crypto/chunked';
import type { Role } from '@latchkey/protocol';
import type * as TokenClaims from '../../packages/client/src/token-claims.ts';
import { INFECTED_FILE, REPORTED_SIGNATURE, startClamd } from './_clamd.ts';
import {
  CLEAN_FILE,
  SECRET_NAME,
  readAll,
  setup,
  sha256,
  watch,
  type Cleanup,
} from './_scanner-stack.ts';
import { until } from './harness.ts';

type TokenClaimsModule = typeof TokenClaims;

/**
 * Modified clients: while `forged.on`, Mallory's believes its visitor token names a scanner, and
 * Rogue's believes its scanner token names a visitor (so each skips the SDK's own refusal).
 */
const forged = vi.hoisted(() => ({ on: false }));
vi.mock('../../packages/client/src/token-claims.ts', async (importOriginal) => {
  const real = await importOriginal<TokenClaimsModule>();
  return {
    tokenClaims: (token: string) => {
      const id = real.tokenClaims(token);
      if (!id || (id.participantId !== 'mallory' && id.participantId !== 'rogue')) return id;
      const role: Role = id.role;
      const pretend: Role = id.participantId === 'mallory' ? 'scanner' : 'visitor';
      return {
        contactId: id.contactId,
        participantId: id.participantId,
        get role(): Role {
          return forged.on ? pretend : role;
        },
      };
    },
  };
});

const clamd = await startClamd('scanner end to end', { streamMaxLength: 2 * 1024 * 1024 });
afterAll(() => clamd?.close());

const cleanup: Cleanup = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe.skipIf(!clamd)('the scanner service with clamd', () => {
  it('judges an infected and a clean file; the agent sees infected (with the signature) and clean', async () => {
    const s = await setup(clamd!, cleanup);
    const scanner = await s.startScanner();
    const contact = 'c-scan-1';
    const visitor = await s.client(contact, 'v1', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);

    const bad = await visitor.sendFile(
      new File([INFECTED_FILE], SECRET_NAME, { type: 'application/pdf' }),
    );
    const good = await visitor.sendFile(
      new File([CLEAN_FILE], 'order.txt', { type: 'text/plain' }),
      {
        text: 'my order',
      },
    );
    await until(() => view.scans.length >= 2, 20_000, 'two verdicts');
    expect(view.scans).toEqual(
      expect.arrayContaining([
        { seq: bad.seq, msgId: bad.msgId, scan: 'infected', signature: REPORTED_SIGNATURE },
        { seq: good.seq, msgId: good.msgId, scan: 'clean' },
      ]),
    );
    expect(view.scans).toHaveLength(2);
    // Clean opens with its exact bytes; infected stays blocked.
    expect(await readAll(agent.openFile(good.seq))).toEqual(CLEAN_FILE);
    expect(() => agent.openFile(bad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));

    // The verdicts are messages of the participant `scanner`, role scanner, naming the engine.
    const history = await agent.history(0);
    const verdicts = history.flatMap((e) => (e.ok && e.verdict ? [e] : []));
    expect(verdicts.map((e) => [e.senderId, e.senderRole, e.verdict?.verdict])).toEqual(
      expect.arrayContaining([
        ['scanner', 'scanner', 'infected'],
        ['scanner', 'scanner', 'clean'],
      ]),
    );
    expect(verdicts.every((e) => e.verdict?.engine?.startsWith('ClamAV'))).toBe(true);
    expect(verdicts.find((e) => e.verdict?.ref === bad.msgId)?.verdict?.sha256).toBe(
      sha256(INFECTED_FILE),
    );

    // Its logs name ids and codes only: no file name, no content, no caption.
    const text = JSON.stringify(s.logs);
    expect(text).not.toContain(SECRET_NAME);
    expect(text).not.toContain('order.txt');
    expect(text).not.toContain('my order');
    expect(text).not.toContain('Order 1234');
    expect(s.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ event: 'scan.verdict', msgId: bad.msgId, verdict: 'infected' }),
        expect.objectContaining({ event: 'scan.verdict', msgId: good.msgId, code: 'CLEAN' }),
      ]),
    );
    expect(scanner.contacts()).toEqual([contact]);
  });

  it('refuses a verdict sealed by a non-scanner, and judges the file anyway', async () => {
    const s = await setup(clamd!, cleanup);
    const contact = 'c-scan-forged';
    const mallory = await s.client(contact, 'mallory', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);

    // Before any scanner runs, Mallory sends the infected file and seals a `clean` verdict on
    // it under its visitor certificate (its modified client skips the SDK's refusal).
    const bad = await mallory.sendFile(
      new File([INFECTED_FILE], 'harmless.pdf', { type: 'application/pdf' }),
    );
    forged.on = true;
    const fake = await mallory
      .sendVerdict({ ref: bad.msgId, sha256: sha256(INFECTED_FILE), verdict: 'clean' })
      .finally(() => {
        forged.on = false;
      });
    await until(() => view.refused.some((m) => m.seq === fake.seq), 10_000, 'the forged verdict');
    expect(view.refused.find((m) => m.seq === fake.seq)?.code).toBe('FORBIDDEN');
    expect(view.scans).toHaveLength(0);
    expect(() => agent.openFile(bad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));

    // The scanner starts; the next message makes the relay tell it about the contact. It reads
    // the whole history, takes the forged verdict for nothing, and judges the file.
    await s.startScanner();
    await mallory.send('hello?');
    await until(() => view.scans.length >= 1, 20_000, "the scanner's verdict");
    expect(view.scans).toEqual([
      { seq: bad.seq, msgId: bad.msgId, scan: 'infected', signature: REPORTED_SIGNATURE },
    ]);
    expect(() => agent.openFile(bad.seq)).toThrow(expect.objectContaining({ code: 'FORBIDDEN' }));
  });

  it('refuses text sent under a scanner certificate (the relay stores it, readers do not show it)', async () => {
    const s = await setup(clamd!, cleanup);
    const contact = 'c-scan-text';
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);
    const rogue = await s.client(contact, 'rogue', 'scanner');
    forged.on = true;
    const sent = await rogue.send('Your file is safe, click here').finally(() => {
      forged.on = false;
    });
    await until(() => view.refused.some((m) => m.seq === sent.seq), 10_000, 'the text');
    expect(view.refused.find((m) => m.seq === sent.seq)?.code).toBe('FORBIDDEN');
    expect(view.got.some((m) => m.text.includes('click here'))).toBe(false);
  });

  it('says error, never clean, for a file whose stored ciphertext a relay altered', async () => {
    const s = await setup(clamd!, cleanup);
    const contact = 'c-scan-altered';
    const visitor = await s.client(contact, 'v1', 'visitor');
    const agent = await s.client(contact, 'a1', 'agent', { scanning: true });
    const view = watch(agent);
    const data = new Uint8Array(50_000).fill(0x61);
    const sent = await visitor.sendFile(new File([data], 'notes.txt'));

    // The relay's operator flips a bit inside the second chunk of the stored ciphertext: the
    // first chunk still opens and reaches clamd before the damage is found.
    const size = chunkedCiphertextLength(data.length);
    const stored: string[] = [];
    for (const e of await readdir(s.dir, { withFileTypes: true, recursive: true })) {
      const path = join(e.parentPath, e.name);
      if (e.isFile() && path.includes('.files') && (await stat(path)).size === size)
        stored.push(path);
    }
    expect(stored).toHaveLength(1);
    const ct = await readFile(stored[0]!);
    ct.writeUInt8(ct.readUInt8(30_000) ^ 1, 30_000);
    await writeFile(stored[0]!, ct);

    await s.startScanner();
    await visitor.send('did you get it?');
    await until(() => view.scans.length >= 1, 20_000, "the scanner's verdict");
    expect(view.scans).toEqual([{ seq: sent.seq, msgId: sent.msgId, scan: 'error' }]);
    expect(s.logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          event: 'scan.verdict',
          msgId: sent.msgId,
          code: 'DECRYPT_FAILED',
        }),
      ]),
    );
  });
});
