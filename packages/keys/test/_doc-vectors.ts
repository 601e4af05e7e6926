/**
 * The request-signing test vectors and the example wrapped key as published in
 * docs/key-management.md ("Signing test vectors") and docs/key-manager-api.yaml
 * (`components.securitySchemes.hmac`), read out of the documents themselves so that the tests
 * that recompute them check what a reader sees.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const DOCS = join(import.meta.dirname, '..', '..', '..', 'docs');

export interface DocVector {
  name: string;
  fields: Record<string, string>;
  /** The fenced "string to sign" block (Markdown only). */
  stringToSign?: string;
}

export interface DocVectors {
  /** The encoding bullets, Markdown as written. */
  encodings: string[];
  vectors: DocVector[];
  example: Record<string, string>;
}

/** `| field | \`value\` |` rows; a value without backticks (an empty body) reads as ''. */
function tableRows(block: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of block.split('\n')) {
    const m = /^\| ([^|]+?) \| (.*) \|$/.exec(line);
    if (m?.[1] === undefined || m[2] === undefined || m[1] === 'field' || m[1] === '---') continue;
    const v = /^`(.*)`$/.exec(m[2]);
    out[m[1]] = v?.[1] ?? '';
  }
  return out;
}

/** @throws Error when the section is missing or malformed. */
export function markdownVectors(): DocVectors {
  const md = readFileSync(join(DOCS, 'key-management.md'), 'utf8');
  const start = md.indexOf('\n### Signing test vectors\n');
  if (start < 0) throw new Error('docs/key-management.md has no "Signing test vectors" section');
  const rest = md.slice(start + 1);
  const end = rest.slice(4).search(/\n#{2,3} /);
  const section = end < 0 ? rest : rest.slice(0, end + 4);
  const [intro = '', ...parts] = section.split('\n#### ');
  const encodings = intro.split('\n').filter((l) => l.startsWith('- **'));
  const vectors: DocVector[] = [];
  let example: Record<string, string> = {};
  for (const part of parts) {
    const name = part.slice(0, part.indexOf('\n'));
    if (name.startsWith('Vector')) {
      const sts = /```text\n([\s\S]*?)\n```/.exec(part);
      vectors.push({
        name,
        fields: tableRows(part),
        ...(sts?.[1] === undefined ? {} : { stringToSign: sts[1] }),
      });
    } else if (name.startsWith('Example wrapped key')) example = tableRows(part);
  }
  return { encodings, vectors, example };
}

/** The YAML mirror: the hmac scheme's description and its `x-latchkey-*` extensions. */
export function openApiVectors(): {
  description: string;
  vectors: DocVector[];
  example: Record<string, string>;
} {
  const yaml = readFileSync(join(DOCS, 'key-manager-api.yaml'), 'utf8');
  const start = yaml.indexOf('\n    hmac:\n');
  if (start < 0) throw new Error('docs/key-manager-api.yaml has no hmac security scheme');
  const lines = yaml.slice(start + 1).split('\n');
  const block: string[] = [];
  for (const line of lines.slice(1)) {
    if (/^ {0,4}\S/.test(line)) break;
    block.push(line);
  }
  const unquote = (v: string): string => v.replace(/^'(.*)'$/, '$1').replace(/''/g, "'");
  const descStart = block.findIndex((l) => l === '      description: |');
  const description: string[] = [];
  for (const l of block.slice(descStart + 1)) {
    if (l !== '' && !l.startsWith('        ')) break;
    description.push(l.slice(8));
  }
  const vectors: DocVector[] = [];
  const example: Record<string, string> = {};
  let where: 'none' | 'vectors' | 'example' = 'none';
  for (const l of block) {
    if (l === '      x-latchkey-test-vectors:') where = 'vectors';
    else if (l === '      x-latchkey-example-wrap:') where = 'example';
    else if (/^ {6}\S/.test(l)) where = 'none';
    let m: RegExpExecArray | null;
    if (where === 'vectors' && (m = /^ {8}- name: (.*)$/.exec(l)) !== null)
      vectors.push({ name: unquote(m[1] ?? ''), fields: {} });
    else if (where === 'vectors' && (m = /^ {10}([^:]+): (.*)$/.exec(l)) !== null) {
      const v = vectors.at(-1);
      if (v !== undefined && m[1] !== undefined) v.fields[m[1]] = unquote(m[2] ?? '');
    } else if (where === 'example' && (m = /^ {8}([^:]+): (.*)$/.exec(l)) !== null) {
      if (m[1] !== undefined) example[m[1]] = unquote(m[2] ?? '');
    }
  }
  return { description: description.join('\n'), vectors, example };
}
