// Entry of every benchmark child process (relays under test, load generators): registers the
// tsx loader, then imports the TypeScript module named by the first argument.
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';

register();
const entry = process.argv[2];
if (!entry) throw new Error('usage: child.mjs MODULE.ts [JSON-CONFIG]');
await import(pathToFileURL(entry).href);
