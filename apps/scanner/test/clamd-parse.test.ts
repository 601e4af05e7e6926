/**
 * The clamd client's pure parts (clamd.ts): its address forms, and its reading of clamd's
 * INSTREAM answers, including hostile ones (a signature name is cut and kept printable). The
 * client against a real clamd: tests/integration/scanner-clamd.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ClamdClient, parseClamdAddress, parseInstreamReply } from '../src/clamd.ts';
import { Limiter } from '../src/limiter.ts';

describe('clamd addresses', () => {
  it('accepts unix:/path, /path and tcp://host:port', () => {
    expect(parseClamdAddress('unix:/run/clamav/clamd.ctl')).toEqual({
      path: '/run/clamav/clamd.ctl',
    });
    expect(parseClamdAddress('/tmp/c.sock')).toEqual({ path: '/tmp/c.sock' });
    expect(parseClamdAddress('tcp://127.0.0.1:3310')).toEqual({ host: '127.0.0.1', port: 3310 });
    expect(parseClamdAddress('tcp://[::1]:3310')).toEqual({ host: '::1', port: 3310 });
    for (const bad of [
      'clamd.sock',
      'tcp://h',
      'tcp://h:0',
      'tcp://h:70000',
      'http://h:1',
      'unix:',
      '/',
    ]) {
      expect(() => parseClamdAddress(bad)).toThrow(TypeError);
    }
  });

  it('refuses non-positive limits', () => {
    expect(() => new ClamdClient({ address: { path: '/x' }, streamMaxLength: 0 })).toThrow(
      RangeError,
    );
    expect(() => new ClamdClient({ address: { path: '/x' }, chunkBytes: 1.5 })).toThrow(RangeError);
  });
});

describe("clamd's INSTREAM answers", () => {
  it('reads clean, infected and error answers', () => {
    expect(parseInstreamReply('stream: OK\0')).toEqual({ status: 'clean' });
    expect(parseInstreamReply('stream: Win.Test.EICAR_HDB-1 FOUND\0')).toEqual({
      status: 'infected',
      signature: 'Win.Test.EICAR_HDB-1',
    });
    expect(parseInstreamReply('INSTREAM size limit exceeded. ERROR')).toMatchObject({
      status: 'error',
      code: 'TOO_LARGE',
    });
    expect(parseInstreamReply("stream: Can't allocate memory ERROR")).toMatchObject({
      status: 'error',
      code: 'CLAMD_ERROR',
    });
  });

  it('never takes an unexpected answer for clean', () => {
    for (const odd of [
      '',
      'stream:',
      'stream: ok',
      'OK',
      'stream: OK FOUND?',
      'PONG',
      'stream: OK extra',
    ]) {
      expect(parseInstreamReply(odd).status).not.toBe('clean');
    }
  });

  it('keeps a signature name printable and at most 200 characters', () => {
    const r = parseInstreamReply(`stream: ${'A'.repeat(300)}\u001b[31m FOUND`);
    expect(r.status).toBe('infected');
    const sig = (r as { signature: string }).signature;
    expect(sig.length).toBe(200);
    expect(sig).toMatch(/^[\x21-\x7e]+$/);
    const r2 = parseInstreamReply('stream: Bad\u001b[2JName FOUND');
    expect((r2 as { signature: string }).signature).toBe('Bad_[2JName');
  });
});

describe('the scan limiter', () => {
  it('never runs more than its bound at once, and runs everything', async () => {
    const limiter = new Limiter(2);
    let running = 0;
    let most = 0;
    const release: (() => void)[] = [];
    const tasks = Array.from({ length: 5 }, (_, i) =>
      limiter.run(async () => {
        running++;
        most = Math.max(most, running);
        await new Promise<void>((r) => release.push(r));
        running--;
        return i;
      }),
    );
    for (let done = 0; done < 5; done++) {
      await new Promise<void>((r) => setImmediate(r));
      expect(limiter.running).toBeLessThanOrEqual(2);
      release.shift()?.();
    }
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3, 4]);
    expect(most).toBe(2);
  });
});
