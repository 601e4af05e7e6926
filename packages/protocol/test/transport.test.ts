import { describe, expect, it } from 'vitest';
import { InsecureListenerError, assertSecureListener, isLoopbackHost } from '../src/transport.ts';

describe('listener transport policy', () => {
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of [
      '0.0.0.0',
      '::',
      '10.0.0.1',
      '192.168.1.2',
      'example.com',
      '128.0.0.1',
      '127.0.0.1.example.com',
    ]) {
      expect(isLoopbackHost(h)).toBe(false);
    }
  });

  it('refuses plain listeners off loopback unless told --insecure', () => {
    expect(() => assertSecureListener('relay', '0.0.0.0', { tls: false })).toThrow(
      InsecureListenerError,
    );
    expect(() => assertSecureListener('relay', '0.0.0.0', { tls: false })).toThrow(/--insecure/);
    expect(() => assertSecureListener('relay', '0.0.0.0', { tls: true })).not.toThrow();
    expect(() =>
      assertSecureListener('relay', '0.0.0.0', { tls: false, insecure: true }),
    ).not.toThrow();
    expect(() => assertSecureListener('relay', '127.0.0.1', { tls: false })).not.toThrow();
  });
});
