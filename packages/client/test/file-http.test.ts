/**
 * The relay's file API as the client calls it (file-http.ts): fetch is called unbound, as a
 * browser's own fetch demands; error answers become the relay's typed code; a link to another
 * origin is refused.
 */
import { describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { createUpload, fileLink, relayHttpBase } from '../src/file-http.ts';

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

describe('file-http', () => {
  it('calls fetch unbound, like a browser requires of window.fetch', async () => {
    // A browser's fetch throws "Illegal invocation" when called as a method of another object.
    function browserLikeFetch(this: unknown): Promise<Response> {
      if (this !== undefined && this !== globalThis)
        return Promise.reject(new TypeError('Illegal invocation'));
      return Promise.resolve(
        json(201, { blob: 'A'.repeat(22), contactId: 'c1', size: 100, offset: 0, complete: false }),
      );
    }
    const h = { fetch: browserLikeFetch, base: 'http://127.0.0.1:1', token: 't' };
    await expect(createUpload(h, 100)).resolves.toMatchObject({ offset: 0, size: 100 });
  });

  it("turns the relay's error answer into its code, and refuses a link to another origin", async () => {
    const h = {
      fetch: () =>
        Promise.resolve(json(413, { error: { code: 'TOO_LARGE', message: 'file too large' } })),
      base: 'http://127.0.0.1:1',
      token: 't',
    };
    await expect(createUpload(h, 1e12)).rejects.toSatisfy((e) => LatchkeyError.is(e, 'TOO_LARGE'));
    const elsewhere = {
      ...h,
      fetch: () =>
        Promise.resolve(json(200, { url: 'https://evil.example/x', expiresAt: 1, size: 72 })),
    };
    await expect(fileLink(elsewhere, 'A'.repeat(22))).rejects.toSatisfy((e) =>
      LatchkeyError.is(e, 'UNAVAILABLE'),
    );
  });

  it('maps ws to http and wss to https', () => {
    expect(relayHttpBase('ws://127.0.0.1:8470')).toBe('http://127.0.0.1:8470');
    expect(relayHttpBase('wss://chat.example/relay')).toBe('https://chat.example');
  });
});
