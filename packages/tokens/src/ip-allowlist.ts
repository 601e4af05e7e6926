/**
 * IP/CIDR allowlists (node:net BlockList): who may reach the admin API, and optionally the
 * relay. Entries are single addresses (`10.1.2.3`, `::1`) or CIDR ranges (`10.0.0.0/8`).
 */
import { BlockList, isIP } from 'node:net';

/** Loopback only: the default of the admin API. */
export const LOOPBACK_ALLOWLIST: readonly string[] = ['127.0.0.0/8', '::1'];

/** A socket's remote address with IPv4-mapped IPv6 (`::ffff:1.2.3.4`) reduced to IPv4. */
export function normaliseIp(raw: string | undefined): string {
  const ip = raw ?? '';
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/**
 * Parses an IP/CIDR allowlist.
 * @throws RangeError naming the first entry that is neither an IP nor a CIDR range.
 */
export function parseIpAllowlist(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const raw of entries) {
    const entry = raw.trim();
    const [addr, bits, extra] = entry.split('/');
    const family = addr ? isIP(addr) : 0;
    if (!addr || family === 0 || extra !== undefined)
      throw new RangeError(`not an IP or CIDR range: ${entry}`);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) {
      list.addAddress(addr, type);
      continue;
    }
    const prefix = Number(bits);
    if (!/^\d{1,3}$/.test(bits) || prefix > (family === 6 ? 128 : 32)) {
      throw new RangeError(`bad prefix length in ${entry}`);
    }
    list.addSubnet(addr, prefix, type);
  }
  return list;
}

/** True when `ip` is in `list`. */
export function ipAllowed(list: BlockList, ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  return list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
}
