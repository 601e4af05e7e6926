/**
 * The key service's files under a data directory (open-key-service.ts; DESIGN.md "Key
 * hierarchy": keys in a database of their own, apart from messages).
 *
 * Layout under `dataDir`:
 *   keys/                       0700
 *   keys/keys.db (-wal, -shm)   0600, wrapped content keys (internal adapter)
 *   keys/service-signing.key    0600, the certificate-signing key, wrapped by the master key
 *   keys/access.db              0600, membership and deny table, epoch dates
 *   keys/access-log.key         0600, HMAC key of the key access log (table in keys.db)
 *   keys/webhooks.db            webhook outbox (`key.rotated`, `contact.shredded`, and the access
 *                               log as `key.accessed`, `key.denied`, `key.destroyed`), when configured
 */
import { join } from 'node:path';

/** Paths of the key service's files under a data directory. */
export function keyServicePaths(dataDir: string): {
  dir: string;
  db: string;
  signingKey: string;
  access: string;
  accessLogKey: string;
  webhooks: string;
} {
  const dir = join(dataDir, 'keys');
  return {
    dir,
    db: join(dir, 'keys.db'),
    signingKey: join(dir, 'service-signing.key'),
    access: join(dir, 'access.db'),
    // The access log's HMAC key: a file of its own, so a master-key rewrap keeps the chain valid.
    accessLogKey: join(dir, 'access-log.key'),
    webhooks: join(dir, 'webhooks.db'),
  };
}
