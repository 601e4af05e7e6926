import { describe, expect, it } from 'vitest';
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { generateSigningKeyPair, signWithContext } from '@latchkey/crypto/sign';
import {
  STATEMENT_ALG,
  STATEMENT_CONTEXT,
  type EpochStatement,
  type EpochStatementBody,
} from '@latchkey/protocol';
import { KeyRing } from '../src/key-ring.ts';

const service = generateSigningKeyPair();
const T0 = 1_800_000_000_000;

function statement(
  over: Partial<EpochStatementBody> = {},
  signer = service.secretKey,
  context: string = STATEMENT_CONTEXT,
): EpochStatement {
  const body: EpochStatementBody = {
    v: 1,
    alg: STATEMENT_ALG,
    contactId: 'c1',
    epoch: 1,
    epochs: [
      { epoch: 0, since: T0 },
      { epoch: 1, since: T0 + 5000 },
    ],
    members: [{ participantId: 'v1', role: 'visitor' }],
    removed: [{ participantId: 'a2', at: T0 + 4000 }],
    issuedAt: T0 + 6000,
    ...over,
  };
  const bytes = utf8Encode(JSON.stringify(body));
  return { body: toBase64Url(bytes), sig: toBase64Url(signWithContext(signer, context, bytes)) };
}

describe('KeyRing', () => {
  it('adopts a statement signed by the service key and answers from it', async () => {
    const ring = new KeyRing(service.publicKey, 'c1');
    expect(await ring.adopt(statement(), T0 + 6000)).toBe(true);
    expect(ring.epoch).toBe(1);
    expect(ring.removedAt('a2')).toBe(T0 + 4000);
    expect(ring.removedAt('v1')).toBeUndefined();
    expect(ring.supersededAt(0)).toBe(T0 + 5000);
    expect(ring.supersededAt(1)).toBeUndefined();
    expect(ring.isMember('v1')).toBe(true);
  });

  it('refuses a statement signed by another key, for another purpose, or for another contact', async () => {
    const ring = new KeyRing(service.publicKey, 'c1');
    await expect(
      ring.adopt(statement({}, generateSigningKeyPair().secretKey), T0),
    ).rejects.toMatchObject({ code: 'INTEGRITY' });
    await expect(
      ring.adopt(statement({}, service.secretKey, 'latchkey.v1.cert'), T0),
    ).rejects.toMatchObject({ code: 'INTEGRITY' });
    await expect(ring.adopt(statement({ contactId: 'c2' }), T0)).rejects.toMatchObject({
      code: 'INTEGRITY',
    });
    expect(ring.statement).toBeNull();
  });

  it('never goes back to an older statement (a replayed one is ignored)', async () => {
    const ring = new KeyRing(service.publicKey, 'c1');
    const old = statement({ epoch: 0, epochs: [{ epoch: 0, since: T0 }], issuedAt: T0 + 1000 });
    await ring.adopt(statement(), T0 + 6000);
    expect(await ring.adopt(old, T0 + 7000)).toBe(false);
    expect(ring.epoch).toBe(1);
  });

  it('is fresh for maxAge by its own clock from receipt, and stale after expire()', async () => {
    const ring = new KeyRing(service.publicKey, 'c1');
    expect(ring.isFresh(T0, 10_000)).toBe(false);
    await ring.adopt(statement({ issuedAt: T0 - 3_600_000 }), T0); // the service clock an hour behind
    expect(ring.isFresh(T0 + 10_000, 10_000)).toBe(true);
    expect(ring.isFresh(T0 + 10_001, 10_000)).toBe(false);
    ring.expire();
    expect(ring.isFresh(T0, 10_000)).toBe(false);
  });

  it('rotationOwed: a removal after the current epoch began means the key service still owes a rotation', async () => {
    const owed = new KeyRing(service.publicKey, 'c1');
    // a2 removed at T0+4000 while epoch 1 began at T0+5000: rotated after the removal.
    await owed.adopt(statement(), T0 + 6000);
    expect(owed.rotationOwed()).toBe(false);
    await owed.adopt(
      statement({ removed: [{ participantId: 'a2', at: T0 + 5500 }], issuedAt: T0 + 7000 }),
      T0 + 7000,
    );
    expect(owed.rotationOwed()).toBe(true);
    await owed.adopt(
      statement({
        epoch: 2,
        epochs: [
          { epoch: 1, since: T0 + 5000 },
          { epoch: 2, since: T0 + 9000 },
        ],
        removed: [{ participantId: 'a2', at: T0 + 5500 }],
        issuedAt: T0 + 9500,
      }),
      T0 + 9500,
    );
    expect(owed.rotationOwed()).toBe(false);
  });
});
