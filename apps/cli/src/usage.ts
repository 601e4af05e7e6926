/**
 * Command-line contract of `latchkey` (README "Command line"): names, flags and exit codes
 * are stable; outside checks depend on them.
 */
export const EXIT = { ok: 0, error: 1, usage: 2, decryptFailed: 3 } as const;

export const USAGE = `usage: latchkey <command> [flags]

commands:
  start  [--data DIR] [--port N] [--host H] [--tls-cert FILE --tls-key FILE] [--insecure]
         [--allowed-origins ORIGIN,...] [--admin-allowlist CIDR,...] [--relay-allowlist CIDR,...]
         run relay and key service on the embedded SQLite default; prints
         "relay: ws://...", "keys: http://..." then "ready"; SIGTERM stops it
  token  --contact ID --participant ID --role visitor|agent|supervisor [--ttl 1h] [--data DIR]
         print a participant token signed with the dev API secret
  send   --token T [--relay URL --keys URL] [--data DIR] TEXT
         send one message; prints the assigned seq after the relay's ack
  read   --token T [--relay URL --keys URL] [--data DIR] [--since N] [--json]
         print the contact's decrypted history, one message per line
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

exit codes: 0 ok, 1 error (code on stderr), 2 bad usage, 3 a message failed to open (read)
`;

/** A usage error: exit 2 with a one-line message. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
