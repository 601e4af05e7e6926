/**
 * Entry of the `latchkey` command: parses arguments, runs one subcommand, maps errors to the
 * documented exit codes (one line on stderr naming the error code).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LatchkeyError } from '@latchkey/protocol';
import { close, contacts, invite, kick, transfer } from './admin.ts';
import { KEY_START_OPTIONS } from './key-settings.ts';
import { keysAudit } from './keys-audit.ts';
import { keysRewrap } from './keys-rewrap.ts';
import { shred } from './shred.ts';
import { kms } from './kms-check.ts';
import { backup, restore } from './backup.ts';
import { download, read, send, token } from './commands.ts';
import { start } from './start.ts';
import { EXIT, USAGE, UsageError } from './usage.ts';
import { webhooks } from './webhooks.ts';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const parse = <T extends NonNullable<ParseArgsConfig['options']>>(
    options: T,
    positionals = false,
  ) => {
    try {
      return parseArgs({ args: rest, options, allowPositionals: positionals, strict: true });
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
  };
  const str = { type: 'string' } as const;
  switch (command ?? '') {
    case 'start':
      return start(
        parse({
          data: str,
          port: str,
          host: str,
          'allowed-origins': str,
          durability: str,
          'relay-allowlist': str,
          // --tls-*, --insecure, --admin-allowlist, --webhook-allowlist, --keys-store and the
          // key manager's: the key service's settings, which keyd takes too.
          ...KEY_START_OPTIONS,
          store: str,
          fanout: str,
          'webhook-key-file': str,
          scanner: { type: 'boolean' },
          clamd: str,
        }).values,
        out,
      );
    case 'token':
      return token(
        parse({ contact: str, participant: str, role: str, ttl: str, data: str }).values,
        out,
      );
    case 'send': {
      const { values, positionals } = parse(
        { token: str, 'token-file': str, relay: str, keys: str, data: str, file: str },
        true,
      );
      if (positionals.length > 1) throw new UsageError('send takes one TEXT argument (quote it)');
      return send(values, positionals[0], out);
    }
    case 'download':
      return download(
        parse({
          token: str,
          'token-file': str,
          relay: str,
          keys: str,
          data: str,
          seq: str,
          out: str,
        }).values,
        out,
      );
    case 'read':
      return read(
        parse({
          token: str,
          'token-file': str,
          relay: str,
          keys: str,
          data: str,
          since: str,
          json: { type: 'boolean' },
        }).values,
        out,
      );
    case 'contacts':
      return contacts(
        parse({ relay: str, keys: str, data: str, state: str, json: { type: 'boolean' } }).values,
        out,
      );
    case 'close':
      return close(parse({ contact: str, relay: str, keys: str, data: str }).values, out);
    case 'kick':
      return kick(
        parse({ contact: str, participant: str, relay: str, keys: str, data: str }).values,
        out,
      );
    case 'transfer':
      return transfer(
        parse({ contact: str, from: str, to: str, relay: str, keys: str, data: str }).values,
        out,
      );
    case 'invite':
      return invite(
        parse({ contact: str, participant: str, role: str, relay: str, keys: str, data: str })
          .values,
        out,
      );
    case 'backup':
      return backup(
        parse({ data: str, out: str, 'keys-out': str, 'include-secrets': { type: 'boolean' } })
          .values,
        out,
      );
    case 'restore':
      return restore(parse({ from: str, data: str, force: { type: 'boolean' } }).values, out);
    case 'webhooks': {
      const [sub, ...subArgs] = rest;
      try {
        const { values } = parseArgs({
          args: subArgs,
          options: {
            url: str,
            events: str,
            description: str,
            id: str,
            event: str,
            json: { type: 'boolean' },
            service: str,
            relay: str,
            keys: str,
            data: str,
          },
          strict: true,
        });
        return await webhooks(sub, values, out);
      } catch (err) {
        if (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))
          throw new UsageError(err.message);
        throw err;
      }
    }
    case 'keys': {
      const [sub, ...subArgs] = rest;
      const parseSub = <T extends NonNullable<ParseArgsConfig['options']>>(options: T) => {
        try {
          return parseArgs({ args: subArgs, options, allowPositionals: false, strict: true });
        } catch (err) {
          throw new UsageError(err instanceof Error ? err.message : String(err));
        }
      };
      if (sub === 'audit')
        return keysAudit(
          parseSub({
            data: str,
            json: { type: 'boolean' },
            head: str,
            'verify-stream': str,
            'log-key': str,
            after: str,
            'keys-store': str,
          }).values,
          out,
          (l) => process.stderr.write(`${l}\n`),
        );
      if (sub === 'rewrap')
        return keysRewrap(
          parseSub({
            data: str,
            keys: str,
            relay: str,
            offline: { type: 'boolean' },
            'keys-store': str,
          }).values,
          out,
        );
      throw new UsageError('keys takes audit or rewrap');
    }
    case 'kms':
      return kms(rest, out);
    case 'shred':
      return shred(
        parse({
          contact: str,
          complete: { type: 'boolean' },
          offline: { type: 'boolean' },
          relay: str,
          keys: str,
          data: str,
        }).values,
        out,
      );
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return EXIT.ok;
    default:
      throw new UsageError(command ? `unknown command: ${command}` : 'missing command');
  }
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`error: USAGE ${err.message} (see: latchkey help)\n`);
    process.exitCode = EXIT.usage;
  } else if (LatchkeyError.is(err)) {
    process.stderr.write(`error: ${err.code} ${err.message}\n`);
    process.exitCode = EXIT.error;
  } else {
    process.stderr.write(`error: INTERNAL ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = EXIT.error;
  }
}
