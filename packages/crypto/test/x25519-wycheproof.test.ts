/**
 * X25519 on both backends (noble, and node:crypto as the `node` entries install it) against
 * Wycheproof's x25519_test.json from the shared folder (all 518 cases: twists, non-canonical and
 * high-bit public keys, edge-case scalars, the 31 low-order public keys whose shared secret is all
 * zeros, which dh.ts refuses with RangeError), and against each other on random keys.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../src/_native.ts';
import { nodeX25519PublicKey, nodeX25519SharedSecret } from '../src/_x25519-node.ts';
import { generateX25519KeyPair, x25519PublicKey, x25519SharedSecret } from '../src/dh.ts';
import { randomBytes } from '../src/random.ts';
import { hex, toHex } from './_hex.ts';
import { describeWithSharedVectors, readSharedVectors } from './_shared-vectors.ts';

interface X25519Case {
  tcId: number;
  flags: string[];
  public: string;
  private: string;
  shared: string;
  result: 'valid' | 'acceptable' | 'invalid';
}

const NODE = { publicKey: nodeX25519PublicKey, sharedSecret: nodeX25519SharedSecret };
const BACKENDS = { noble: undefined, node: NODE } as const;

afterEach(() => {
  delete native.x25519;
});

function use(backend: keyof typeof BACKENDS): void {
  if (BACKENDS[backend]) native.x25519 = BACKENDS[backend];
  else delete native.x25519;
}

describeWithSharedVectors('X25519: Wycheproof x25519_test.json', () => {
  const file = readSharedVectors<{ testGroups: { tests: X25519Case[] }[] }>('x25519_test.json');
  const cases = file.testGroups.flatMap((g) => g.tests);

  it('has the 518 cases', () => {
    expect(cases).toHaveLength(518);
  });

  for (const backend of Object.keys(BACKENDS) as (keyof typeof BACKENDS)[]) {
    it(`${backend}: every case gives Wycheproof's shared secret, or RangeError when it is zero`, () => {
      use(backend);
      let refused = 0;
      for (const c of cases) {
        const run = (): Uint8Array => x25519SharedSecret(hex(c.private), hex(c.public));
        if (/^(00)+$/.test(c.shared)) {
          expect(run, `tcId ${c.tcId}`).toThrow(RangeError);
          refused++;
        } else {
          expect(toHex(run()), `tcId ${c.tcId}`).toBe(c.shared);
        }
      }
      expect(refused).toBe(31);
    });
  }
});

describe('X25519: node:crypto and noble', () => {
  it('derive the same public keys and shared secrets on random keys, high bits included', () => {
    for (let i = 0; i < 64; i++) {
      const secret = randomBytes(32);
      const peer = generateX25519KeyPair().publicKey;
      if (i % 2 === 1) peer[31]! |= 0x80; // RFC 7748 §5: the top bit is ignored
      use('noble');
      const expected = [x25519PublicKey(secret), x25519SharedSecret(secret, peer)].map(toHex);
      use('node');
      expect([x25519PublicKey(secret), x25519SharedSecret(secret, peer)].map(toHex)).toEqual(
        expected,
      );
    }
  });

  it('node: generated key pairs and RFC 7748 §6.1', () => {
    use('node');
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    expect(x25519SharedSecret(a.secretKey, b.publicKey)).toEqual(
      x25519SharedSecret(b.secretKey, a.publicKey),
    );
    const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bob = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    expect(toHex(x25519PublicKey(alice))).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    expect(toHex(x25519SharedSecret(alice, x25519PublicKey(bob)))).toBe(
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
  });
});
