/**
 * Command-line contract of `latchkey` (README "Command line"): names, flags and exit codes
 * are stable; outside checks depend on them.
 */
export const EXIT = { ok: 0, error: 1, usage: 2, decryptFailed: 3 } as const;

export const USAGE = `usage: latchkey <command> [flags]

commands:
  start  [--data DIR] [--port N] [--host H] [--tls-cert FILE --tls-key FILE] [--insecure]
         [--allowed-origins ORIGIN,...] [--admin-allowlist CIDR,...] [--relay-allowlist CIDR,...]
         [--webhook-allowlist CIDR,...]
         [--store postgres://...] [--fanout redis://...] [--durability normal|full]
         [--webhook-key-file FILE] [--scanner [--clamd unix:/PATH|tcp://HOST:PORT]]
         [--keys-store postgres://...] [--key-cache-ttl SECONDS]
         [--key-manager internal|http|pkcs11|kmip] [--kms-url URL --kms-key-id ID --kms-client-id ID
         --kms-secret-file FILE --kms-model wrap|store] [--pkcs11-module SO --pkcs11-token LABEL
         --pkcs11-key-label L --pkcs11-pin-file FILE] [--kmip-host H --kmip-port N --kmip-ca FILE
         --kmip-client-cert FILE --kmip-client-key FILE --kmip-key-name NAME --kmip-create-key]
         [--rotate-after 1d] [--rotate-after-messages N] [--shred-complete-every 1h]
         [--syslog-url tls://HOST:PORT --syslog-ca FILE [--syslog-servername NAME]]
         run relay and key service on the embedded SQLite default; prints
         "relay: ws://...", "keys: http://..." then "ready"; SIGTERM stops it
         the stand-alone key service (apps/keyd, keyd --help) takes the same key-service flags
         and variables; for a cluster of relays and key services see docs/operations.md
           --webhook-key-file F    LATCHKEY_WEBHOOK_KEY_FILE  default <data>/relay/webhooks.db.key;
                                   the same file for every relay on one --store
           --scanner               also run the attachment scanner (needs clamd; prints
                                   "scanner: URL" after "agent:"; docs/operations.md)
           --clamd ADDR            with --scanner: unix:/PATH or tcp://HOST:PORT,
                                   default unix:/run/clamav/clamd.ctl
           --keys-store URL        LATCHKEY_KEYS_STORE       default <data>/keys/keys.db
           --key-cache-ttl 0       LATCHKEY_KEY_CACHE_TTL    default 0 (off): seconds a key already
                                   unwrapped is still served while the key manager is unreachable
           --admin-allowlist L     LATCHKEY_ADMIN_ALLOWLIST  default loopback only
           --webhook-allowlist L   LATCHKEY_WEBHOOK_ALLOWLIST  default none
           --tls-cert/--tls-key F  LATCHKEY_TLS_CERT/_KEY    default plain (loopback only);
           --insecure              LATCHKEY_INSECURE=1       plain off loopback (TLS in front)
         --key-manager http (flag, environment, default):
           --kms-url URL           LATCHKEY_KMS_URL          required, http(s)://...
           --kms-model wrap|store  LATCHKEY_KMS_MODEL        default wrap
           --kms-key-id ID         LATCHKEY_KMS_KEY_ID       default latchkey-kek
           --kms-client-id ID      LATCHKEY_KMS_CLIENT_ID    default latchkey
           --kms-secret-file FILE  LATCHKEY_KMS_SECRET_FILE  required unless LATCHKEY_KMS_SECRET
                                   holds the secret (at least 32 bytes: hex, base64url, or
                                   prefixed hex:/base64url:)
           --kms-timeout 2s        LATCHKEY_KMS_TIMEOUT      default 2s per attempt
           --kms-cache-ttl 0       LATCHKEY_KMS_CACHE_TTL    default 0 (no cache)
           --kms-generate          LATCHKEY_KMS_GENERATE=1   default off: new keys from the key
                                   manager's generate (wrap model) instead of made here
         key access log to a SIEM (docs/siem.md), besides the webhooks key.accessed/denied/destroyed:
           --syslog-url tls://H:P  LATCHKEY_SYSLOG_URL       RFC 5424 over TLS (RFC 5425); tcp:// refused
           --syslog-ca FILE        LATCHKEY_SYSLOG_CA        required with a URL: the collector's CA (PEM)
           --syslog-servername N   LATCHKEY_SYSLOG_SERVERNAME  default the URL's host
  token  --contact ID --participant ID --role visitor|agent|supervisor|scanner [--ttl 1h] [--data DIR]
         print a participant token signed with the dev API secret
  send   --token T [--relay URL --keys URL] [--data DIR] TEXT
  send   --token T --file PATH [TEXT]
         send one message, or a file (encrypted here, uploaded, with TEXT as its caption);
         prints the assigned seq after the relay's ack
  read   --token T [--relay URL --keys URL] [--data DIR] [--since N] [--json]
         print the contact's decrypted history, one message per line; a file message as
         "SEQ TIME SENDER: [file NAME SIZE bytes sha256=HEX] TEXT"
  download --token T --seq N --out PATH [--relay URL --keys URL] [--data DIR]
         write the decrypted file of message N to PATH; prints "PATH BYTES sha256=HEX";
         exit 1 with "error: DECRYPT_FAILED ..." and nothing at PATH when any chunk fails
  contacts [--relay URL --keys URL] [--data DIR] [--state open|closed|expired] [--json]
         list contacts with state and participants (admin API key)
  close    --contact ID [--relay URL --keys URL] [--data DIR]
         close a contact: no more sends, history stays readable
  kick     --contact ID --participant ID [--relay URL --keys URL] [--data DIR]
         remove a participant: key service first, then relay
  transfer --contact ID --from AGENT --to AGENT [--relay URL --keys URL] [--data DIR]
         hand a contact to another agent, who reads the whole history
  invite   --contact ID --participant ID --role agent|supervisor [--relay URL --keys URL] [--data DIR]
         admit a second agent or a supervisor ahead of time
  shred    --contact ID [--relay URL --keys URL] [--data DIR]
         crypto-shredding: every key of the contact destroyed, then its ciphertext deleted
  shred    --complete [--keys URL] [--data DIR] [--offline]
         retire the key generation shredded keys were wrapped under (old key backups open no more)
  webhooks add --url URL [--events TYPE,...] [--description TEXT] | list [--json] | remove --id EP
         | test --id EP | replay --id EP [--event EVT,...] | dead-letters --id EP [--json]
         | rotate-secret --id EP | retry --id EP
         [--service relay|keys]
         signed webhooks of the relay, or with --service keys of the key service
         (docs/webhooks.md); add and rotate-secret print the secret once; add warns on
         stderr when the URL is a private or loopback address off --webhook-allowlist;
         retry sends pending deliveries now and dead letters again
  keys audit  [--data DIR] [--json] [--head SEQ:HASH] [--keys-store postgres://...]
         print the key access log and verify its hash chain (exit 1: TAMPERED)
  keys audit  --verify-stream FILE [--log-key FILE] [--after SEQ:HASH|first] [--head SEQ:HASH]
         verify the access records a SIEM received (syslog lines, webhook bodies; docs/siem.md)
  keys rewrap [--data DIR] [--keys URL] [--offline] [--keys-store postgres://...]
         re-wrap every content key under a new master key (LATCHKEY_NEW_MASTER_KEY or generated);
         offline with the keys on PostgreSQL: --keys-store (or LATCHKEY_KEYS_STORE) names them;
         with --key-manager http: in place at the key manager under its KEK's newest version
  kms check [--kms-url URL] [--kms-model wrap|store] [--kms-key-id ID] [--kms-client-id ID]
         [--kms-secret-file FILE]
         conformance checks of an external key manager (secret LATCHKEY_KMS_SECRET or the file);
         prints "ok NAME" or "FAIL NAME detail" per check, then "N passed, N failed" (exit 1: any failed)
  backup   --out DIR2 [--data DIR] [--keys-out DIR3 [--include-secrets]]
         online, consistent copy (while start runs) with a manifest (SHA-256): the messages into
         DIR2 (never a key), the key service's databases (and secrets) into DIR3
  restore  --from DIR2 [--data DIR] [--force]
         verify a backup's manifest and copy it into DIR (messages and keys one after the other);
         refuses files DIR already has unless --force

exit codes: 0 ok, 1 error (code on stderr), 2 bad usage, 3 a message failed to open (read)
`;

/** A usage error: exit 2 with a one-line message. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
