/**
 * `@latchkey/crypto/signal` under the `node` export condition: the same module, with the node:crypto
 * backends loaded first (_node.ts).
 */
import '../_node.ts';
export * from '../signal.ts';
