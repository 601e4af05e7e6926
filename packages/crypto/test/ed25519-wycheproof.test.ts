/**
 * Wycheproof (C2SP/wycheproof, testvectors_v1) `ed25519_test.json`, read at run time from the
 * shared folder: all 151 cases through every verifier, the synchronous one on node:crypto and
 * noble and the async one on node:crypto, WebCrypto and noble, each giving exactly the expected
 * result.
 */
import { afterEach, expect, it } from 'vitest';
import '../src/_node.ts';
import { setEd25519Backend, verify, verifyAsync } from '../src/sign.ts';
import { hex } from './_hex.ts';
import { describeWithSharedVectors, readSharedVectors } from './_shared-vectors.ts';
import type { WycheproofFile, WycheproofTest } from './_shared-vectors.ts';

interface EddsaGroup {
  publicKey: { curve: string; keySize: number; pk: string };
  tests: (WycheproofTest & { msg: string; sig: string })[];
}

const label = (t: WycheproofTest): string =>
  `tcId ${t.tcId} ${t.result} [${t.flags.join(',')}]${t.comment === '' ? '' : ` ${t.comment}`}`;

afterEach(() => setEd25519Backend('auto'));

describeWithSharedVectors('Wycheproof ed25519_test.json', () => {
  const file = readSharedVectors<WycheproofFile<EddsaGroup>>('ed25519_test.json');
  const cases = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, pk: g.publicKey.pk })));

  it('has all 151 cases, for edwards25519', () => {
    expect(file.algorithm).toBe('EDDSA');
    expect(cases).toHaveLength(file.numberOfTests);
    expect(cases).toHaveLength(151);
    expect(new Set(file.testGroups.map((g) => g.publicKey.curve))).toEqual(
      new Set(['edwards25519']),
    );
    // The file has no "acceptable" cases: every verifier must give exactly valid or invalid.
    expect(cases.filter((t) => t.result === 'acceptable')).toEqual([]);
  });

  for (const t of cases) {
    it(label(t), async () => {
      const expected = t.result === 'valid';
      const [pk, msg, sig] = [hex(t.pk), hex(t.msg), hex(t.sig)];
      for (const backend of ['node', 'webcrypto', 'noble'] as const) {
        setEd25519Backend(backend);
        expect(verify(pk, msg, sig), `verify on ${backend}`).toBe(expected);
        expect(await verifyAsync(pk, msg, sig), `verifyAsync on ${backend}`).toBe(expected);
      }
    });
  }
});
