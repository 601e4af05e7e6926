/** The reference key manager serves exactly the operations of docs/key-manager-api.yaml. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { withKms } from './_setup.ts';

it('matches the paths and methods of the OpenAPI document', async () => {
  const yaml = readFileSync(
    join(import.meta.dirname, '..', '..', '..', 'docs', 'key-manager-api.yaml'),
    'utf8',
  );
  expect(yaml).toMatch(/^openapi: 3\.1\.\d+$/m);
  const section = yaml.slice(yaml.indexOf('\npaths:\n'), yaml.indexOf('\ncomponents:\n'));
  const documented: string[] = [];
  let path = '';
  for (const line of section.split('\n')) {
    const p = /^ {2}(\/\S+):$/.exec(line);
    if (p?.[1] !== undefined) path = p[1];
    const m = /^ {4}(get|post|put|delete|patch):$/.exec(line);
    if (m?.[1] !== undefined) documented.push(`${m[1].toUpperCase()} ${path}`);
  }
  const env = await withKms();
  try {
    expect([...env.kms.routes].sort()).toEqual(documented.sort());
    expect(documented).toHaveLength(12);
  } finally {
    await env.cleanup();
  }
});
