import { describe, expect, it } from 'vitest';
import { addressAllowlist, isLoopbackAddress, isSpecialAddress } from '../src/index.ts';

describe('special addresses (SSRF)', () => {
  it.each([
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '127.0.0.1',
    '127.9.9.9',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '198.18.0.1',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '::ffff:10.0.0.1',
    '::ffff:7f00:1',
    '64:ff9b::a9fe:a9fe',
    '2001:db8::1',
    'not-an-ip',
  ])('%s is special', (a) => expect(isSpecialAddress(a)).toBe(true));

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])(
    '%s is public',
    (a) => expect(isSpecialAddress(a)).toBe(false),
  );

  it('knows loopback in every spelling', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '[::1]'])
      expect(isLoopbackAddress(a)).toBe(true);
    for (const a of ['10.0.0.1', '::2']) expect(isLoopbackAddress(a)).toBe(false);
  });

  it('allowlists IPs and CIDR ranges, mapped addresses included', () => {
    const allowed = addressAllowlist(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
    expect(allowed('127.0.0.1')).toBe(true);
    expect(allowed('::ffff:127.0.0.1')).toBe(true);
    expect(allowed('127.0.0.2')).toBe(false);
    expect(allowed('10.200.0.1')).toBe(true);
    expect(allowed('fd00::5')).toBe(true);
    expect(allowed('::1')).toBe(false);
    expect(() => addressAllowlist(['example.com'])).toThrow(TypeError);
    expect(() => addressAllowlist(['10.0.0.0/33'])).toThrow(TypeError);
  });
});
