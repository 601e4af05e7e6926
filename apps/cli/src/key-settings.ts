/**
 * The key-service settings of `latchkey start` (also read by `latchkey kms check`): the same
 * flags and environment variables as the stand-alone `keyd`, read by @latchkey/keyd's
 * settings.ts (the one configuration path, issue 17). This module only turns its ConfigError
 * into the CLI's UsageError (exit 2).
 */
import {
  ConfigError,
  KEY_SERVICE_OPTIONS,
  keyServiceSettings as readKeyServiceSettings,
  type KeyServiceFlags,
  type KeyServiceSettings,
} from '@latchkey/keyd';
import { UsageError } from './usage.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** parseArgs options that `latchkey start` takes for the key service (keyd takes them too). */
export const KEY_START_OPTIONS = KEY_SERVICE_OPTIONS;

export type KeyStartFlags = KeyServiceFlags;

/** `fn()`, with a ConfigError as a UsageError. */
function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * The key service settings of `latchkey start` from flags, then environment.
 * @throws UsageError for a missing or malformed setting.
 */
export function keyServiceSettings(
  flags: KeyStartFlags,
  env: Env = process.env,
): KeyServiceSettings {
  return usage(() => readKeyServiceSettings(flags, env));
}
