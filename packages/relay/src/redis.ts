/**
 * `@latchkey/relay/redis`: fan-out between relays over Redis pub/sub (docs/operations.md
 * "Fan-out"). Its own entry, so that `ioredis` loads only when a relay chooses it.
 */
export { RedisFanout, type RedisFanoutOptions } from './redis-fanout.ts';
