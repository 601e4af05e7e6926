/**
 * Frame parsing under arbitrary input (fast-check): anything a peer can send either parses to
 * a frame that matches its schema or fails with LatchkeyError BAD_FRAME, never anything else;
 * valid frames survive a JSON round trip; unknown fields and missing fields are refused.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LatchkeyError } from '../src/errors.ts';
import { ClientFrame, ServerFrame } from '../src/frames.ts';
import { parseJson } from '../src/parse.ts';

const b64 = (bytes: number) =>
  fc
    .uint8Array({ minLength: bytes, maxLength: bytes })
    .map((b) => Buffer.from(b).toString('base64url'));
const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const msgId = fc.stringMatching(/^[A-Za-z0-9_-]{16,64}$/);
const envelope = fc.record({
  v: fc.constant(2 as const),
  alg: fc.constant('latchkey.v1.aes256gcm' as const),
  contactId: id,
  epoch: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  senderId: id,
  msgId,
  sentAt: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  ctr: fc.integer({ min: 1, max: 2 ** 32 - 1 }),
  prev: b64(32),
  seenSeq: fc.nat(),
  seenHash: b64(32),
  nonce: b64(12),
  ciphertext: fc.integer({ min: 16, max: 600 }).chain((n) => b64(n)),
  sig: b64(64),
  cert: fc.record({ body: b64(120), sig: b64(64) }),
});
const clientFrame = fc.oneof(
  fc.record({
    v: fc.constant(1 as const),
    type: fc.constant('auth' as const),
    token: fc.string({ minLength: 1, maxLength: 200 }),
  }),
  fc.record({ v: fc.constant(1 as const), type: fc.constant('join' as const), since: fc.nat() }),
  fc.record({ v: fc.constant(1 as const), type: fc.constant('send' as const), envelope }),
  fc.record({
    v: fc.constant(1 as const),
    type: fc.constant('history' as const),
    id: fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/),
    since: fc.nat(),
  }),
);

function outcome(
  schema: typeof ClientFrame | typeof ServerFrame,
  text: string,
): 'ok' | 'BAD_FRAME' {
  try {
    parseJson(schema, text);
    return 'ok';
  } catch (err) {
    if (LatchkeyError.is(err, 'BAD_FRAME')) return 'BAD_FRAME';
    throw err;
  }
}

describe('frame parsing', () => {
  it('never throws anything but BAD_FRAME, whatever the text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
        ),
        (text) => {
          expect(['ok', 'BAD_FRAME']).toContain(outcome(ClientFrame, text));
          expect(['ok', 'BAD_FRAME']).toContain(outcome(ServerFrame, text));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('accepts every valid client frame and round-trips it', () => {
    fc.assert(
      fc.property(clientFrame, (frame) => {
        expect(parseJson(ClientFrame, JSON.stringify(frame))).toEqual(frame);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a valid frame with an extra field, a missing field, or a truncation', () => {
    fc.assert(
      fc.property(
        clientFrame,
        fc.string({ minLength: 1, maxLength: 12 }),
        fc.nat(),
        (frame, extra, cut) => {
          const text = JSON.stringify(frame);
          if (!(extra in frame))
            expect(outcome(ClientFrame, JSON.stringify({ ...frame, [extra]: 1 }))).toBe(
              'BAD_FRAME',
            );
          const keys = Object.keys(frame).filter((k) => k !== 'v');
          const drop = keys[cut % keys.length]!;
          const { [drop]: _dropped, ...rest } = frame as Record<string, unknown>;
          expect(outcome(ClientFrame, JSON.stringify(rest))).toBe('BAD_FRAME');
          expect(outcome(ClientFrame, text.slice(0, cut % text.length))).toBe('BAD_FRAME');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses another protocol version and non-canonical bytes', () => {
    fc.assert(
      fc.property(envelope, fc.integer({ min: 2, max: 1000 }), (env, v) => {
        expect(outcome(ClientFrame, JSON.stringify({ v, type: 'send', envelope: env }))).toBe(
          'BAD_FRAME',
        );
        expect(
          outcome(
            ClientFrame,
            JSON.stringify({ v: 1, type: 'send', envelope: { ...env, nonce: `${env.nonce}=` } }),
          ),
        ).toBe('BAD_FRAME');
        expect(
          outcome(
            ClientFrame,
            JSON.stringify({ v: 1, type: 'send', envelope: { ...env, sig: env.sig.slice(1) } }),
          ),
        ).toBe('BAD_FRAME');
      }),
      { numRuns: 300 },
    );
  });
});
