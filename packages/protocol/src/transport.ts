/**
 * Transport policy shared by every Latchkey listener (relay, key service, web): plain HTTP or
 * WebSocket is allowed on loopback only; anywhere else a listener needs TLS, or an explicit
 * `insecure` opt-out (for deployments that terminate TLS in front, on a private network).
 * Pure string logic, so the module also loads in browsers.
 */
/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)) return true;
  if (h.startsWith('::ffff:')) return isLoopbackHost(h.slice(7));
  return false;
}

/** A listener would serve without TLS where it must not. */
export class InsecureListenerError extends Error {
  override readonly name = 'InsecureListenerError';
}

/**
 * Refuses a non-loopback listener without TLS unless `insecure` is set.
 * @throws InsecureListenerError naming the service and the host.
 */
export function assertSecureListener(
  service: string,
  host: string,
  opts: { tls: boolean; insecure?: boolean },
): void {
  if (opts.tls || opts.insecure === true || isLoopbackHost(host)) return;
  throw new InsecureListenerError(
    `${service} refuses to listen on ${host} without TLS: configure a certificate and key, or pass --insecure`,
  );
}
