/**
 * Which addresses a webhook may reach (SSRF). Refused unless an allowlist names them: private
 * (RFC 1918, unique local fc00::/7), loopback, link-local (169.254/16 with the cloud metadata
 * service, fe80::/10), carrier-grade NAT, "this network", multicast, reserved and documentation
 * ranges (IANA special-purpose registries, RFC 6890). IPv4-mapped and NAT64 IPv6 addresses are
 * judged by the IPv4 address they carry.
 */
import { BlockList, isIP } from 'node:net';

const SPECIAL_V4: [string, number][] = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
];
const SPECIAL_V6: [string, number][] = [
  ['::', 128],
  ['::1', 128],
  ['100::', 64],
  ['2001::', 23],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
];

const special = new BlockList();
for (const [a, p] of SPECIAL_V4) special.addSubnet(a, p, 'ipv4');
for (const [a, p] of SPECIAL_V6) special.addSubnet(a, p, 'ipv6');

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::/96) address. */
function embeddedV4(addr: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(
    addr,
  );
  if (!m) return undefined;
  if (m[1]) return m[1];
  const hi = parseInt(m[2] ?? '0', 16);
  const lo = parseInt(m[3] ?? '0', 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

function family(addr: string): 'ipv4' | 'ipv6' {
  return isIP(addr) === 4 ? 'ipv4' : 'ipv6';
}

/** Normalises an address: an embedded IPv4 address stands for itself. */
export function normaliseAddress(addr: string): string {
  const a = addr.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  return embeddedV4(a) ?? a;
}

export function isLoopbackAddress(addr: string): boolean {
  const a = normaliseAddress(addr);
  return isIP(a) === 4 ? a.startsWith('127.') : a === '::1';
}

/** True for any address in a special-purpose range (see the module header). */
export function isSpecialAddress(addr: string): boolean {
  const a = normaliseAddress(addr);
  if (isIP(a) === 0) return true;
  return special.check(a, family(a));
}

/**
 * A matcher for an allowlist of IPs and CIDR ranges (`10.0.0.0/8`, `::1`, `192.168.1.7`).
 * @throws TypeError on an entry that is neither.
 */
export function addressAllowlist(entries: readonly string[]): (addr: string) => boolean {
  const list = new BlockList();
  for (const raw of entries) {
    const [ip = '', bits] = raw.trim().split('/');
    const f = isIP(ip);
    if (f === 0) throw new TypeError(`not an IP or CIDR range: ${raw}`);
    const fam = f === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(ip, fam);
    else {
      const n = Number(bits);
      if (!/^\d{1,3}$/.test(bits) || n > (f === 4 ? 32 : 128))
        throw new TypeError(`bad prefix length: ${raw}`);
      list.addSubnet(ip, n, fam);
    }
  }
  return (addr) => {
    const a = normaliseAddress(addr);
    return isIP(a) !== 0 && list.check(a, family(a));
  };
}
