/**
 * `@latchkey/crypto/chunked` under the `node` export condition: the same module, with the
 * node:crypto backends loaded first (_node.ts), so each chunk's AES-256-GCM runs on OpenSSL.
 */
import '../_node.ts';
export * from '../chunked.ts';
