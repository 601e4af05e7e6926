import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import {
  createWebhookVerifier,
  generateSecret,
  signWebhook,
  signatureFor,
  WebhookVerificationError,
} from '../src/index.ts';

// The example of the Standard Webhooks specification and reference libraries
// (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md and libraries' tests).
const SPEC = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};

function reason(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof WebhookVerificationError ? err.reason : String(err);
  }
}

describe('signing (Standard Webhooks)', () => {
  it('matches the specification example', () => {
    expect(signatureFor(SPEC.secret, SPEC.id, SPEC.timestamp, SPEC.body)).toBe(SPEC.signature);
    expect(signWebhook([SPEC.secret], SPEC.id, SPEC.timestamp, SPEC.body)).toEqual({
      'webhook-id': SPEC.id,
      'webhook-timestamp': String(SPEC.timestamp),
      'webhook-signature': SPEC.signature,
    });
  });

  it('verifies the specification example with our helper at its time', () => {
    const v = createWebhookVerifier(SPEC.secret, { now: () => SPEC.timestamp * 1000 + 1000 });
    const h = signWebhook([SPEC.secret], SPEC.id, SPEC.timestamp, SPEC.body);
    expect(v.verify(SPEC.body, h)).toEqual({ test: 2432232314 });
  });

  it('the published verifier accepts what we sign, and we accept what it signs', () => {
    const secret = generateSecret();
    const now = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({
      type: 'contact.opened',
      timestamp: new Date().toISOString(),
      data: { contactId: 'c1', time: 1 },
    });
    expect(
      new Webhook(secret).verify(body, signWebhook([secret], 'evt_abcdefgh1', now, body)),
    ).toMatchObject({ type: 'contact.opened' });
    const theirs = new Webhook(secret).sign('evt_abcdefgh2', new Date(now * 1000), body);
    const h = {
      'webhook-id': 'evt_abcdefgh2',
      'webhook-timestamp': String(now),
      'webhook-signature': theirs,
    };
    expect(createWebhookVerifier(secret).verify(body, h)).toMatchObject({ type: 'contact.opened' });
  });

  it('signs with both secrets during a rotation; each alone verifies', () => {
    const [oldS, newS] = [generateSecret(), generateSecret()];
    const now = Math.floor(Date.now() / 1000);
    const h = signWebhook([oldS, newS], 'evt_rotation1', now, '{}');
    const sigs = h['webhook-signature'].split(' ');
    expect(sigs).toHaveLength(2);
    expect(sigs.every((s) => s.startsWith('v1,'))).toBe(true);
    expect(new Webhook(oldS).verify('{}', h)).toEqual({});
    expect(new Webhook(newS).verify('{}', h)).toEqual({});
    expect(createWebhookVerifier(newS).verify('{}', h)).toEqual({});
    expect(reason(() => createWebhookVerifier(generateSecret()).verify('{}', h))).toBe(
      'BAD_SIGNATURE',
    );
  });

  it('refuses replays, re-timestamped, stale, future, tampered and unsigned requests', () => {
    const secret = generateSecret();
    let clock = 1_800_000_000_000;
    const v = createWebhookVerifier(secret, { now: () => clock });
    const t = Math.floor(clock / 1000);
    const h = signWebhook([secret], 'evt_replay0001', t, '{"a":1}');
    expect(v.verify('{"a":1}', h)).toEqual({ a: 1 });
    expect(reason(() => v.verify('{"a":1}', h))).toBe('REPLAYED');
    expect(reason(() => v.verify('{"a":1}', { ...h, 'webhook-id': 'evt_replay0002' }))).toBe(
      'BAD_SIGNATURE',
    );
    expect(reason(() => v.verify('{"a":1}', { ...h, 'webhook-timestamp': String(t + 1) }))).toBe(
      'BAD_SIGNATURE',
    );
    expect(reason(() => v.verify('{"a":2}', signWebhook([secret], 'x', t, '{"a":1}')))).toBe(
      'BAD_SIGNATURE',
    );
    expect(reason(() => v.verify('{}', signWebhook([secret], 'evt_old', t - 301, '{}')))).toBe(
      'TOO_OLD',
    );
    expect(reason(() => v.verify('{}', signWebhook([secret], 'evt_new', t + 301, '{}')))).toBe(
      'TOO_NEW',
    );
    expect(
      reason(() => v.verify('{}', { 'webhook-id': 'a', 'webhook-timestamp': String(t) })),
    ).toBe('MISSING_HEADERS');
    expect(reason(() => v.verify('{}', { ...h, 'webhook-signature': 'v2,abc' }))).toBe(
      'BAD_SIGNATURE',
    );
    // Six minutes later the same id is out of the window anyway.
    clock += 360_000;
    expect(reason(() => v.verify('{"a":1}', h))).toBe('TOO_OLD');
  });

  it('refuses malformed secrets', () => {
    expect(() => signatureFor('whsec_!!', 'a', 1, '')).toThrow(TypeError);
    expect(() => signatureFor('whsec_AAAA', 'a', 1, '')).toThrow(TypeError);
  });
});
