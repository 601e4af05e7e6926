#!/usr/bin/env node
// Structure checks that CI runs beside typecheck, lint and format (issue 15, STYLE.md):
//  - no import cycles anywhere (madge, a published tool), bench/ included;
//  - no non-test source file over 400 lines unless its header says why (a line in its first
//    comment block with "longer than 400 lines"), and relay.ts and client.ts under 300;
//  - module headers cite files that exist in the repository;
//  - one test layout: every test of a package or app lives in its test/ folder.
// Prints one line per problem and exits 1 when there is any; `--no-cycles` skips madge (it
// needs the npm registry the first time, through npx).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MADGE = 'madge@8.0.0';
const LIMIT = 400;
const TIGHT = { 'packages/relay/src/relay.ts': 300, 'packages/client/src/client.ts': 300 };
const SOURCE_DIRS = ['packages', 'apps', 'bench', 'scripts', 'tests'];
const SKIP = new Set(['node_modules', 'dist', 'results', 'fixtures', '.git', 'playwright-report']);

/** Every .ts/.mjs file below the source folders, as paths relative to the root. */
function sources() {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(join(ROOT, dir))) {
      if (SKIP.has(name)) continue;
      const rel = join(dir, name);
      const st = statSync(join(ROOT, rel));
      if (st.isDirectory()) walk(rel);
      else if (/\.(ts|mts|mjs)$/.test(name) && !name.endsWith('.d.ts')) out.push(rel);
    }
  };
  for (const d of SOURCE_DIRS) if (existsSync(join(ROOT, d))) walk(d);
  return out.map((p) => p.split(sep).join('/'));
}

const isTest = (p) => /\.test\.(ts|mts)$/.test(p) || /(^|\/)(test|tests)\//.test(p);

/** The leading comment block (// lines or one /** *\/ block, after a shebang). */
function header(text) {
  const lines = text.split('\n');
  let i = lines[0]?.startsWith('#!') ? 1 : 0;
  const out = [];
  if (lines[i]?.trimStart().startsWith('/*')) {
    for (; i < lines.length; i++) {
      out.push(lines[i]);
      if (lines[i].includes('*/')) break;
    }
  } else {
    for (; i < lines.length && lines[i].trimStart().startsWith('//'); i++) out.push(lines[i]);
  }
  return out.join('\n');
}

const problems = [];
const files = sources();

// Sizes.
for (const f of files) {
  if (isTest(f)) continue;
  const text = readFileSync(join(ROOT, f), 'utf8');
  const n = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  const tight = TIGHT[f];
  if (tight !== undefined && n >= tight)
    problems.push(`size ${f}: ${n} lines, must be under ${tight}`);
  else if (n > LIMIT && !/longer than 400 lines/i.test(header(text)))
    problems.push(`size ${f}: ${n} lines, over ${LIMIT} without its header saying why`);
}

// Test layout.
for (const f of files) {
  if (/^(packages|apps)\/[^/]+\/src\/.*\.test\.(ts|mts)$/.test(f))
    problems.push(`layout ${f}: tests live in the package's test/ folder`);
}

// Files cited in module headers.
const CITED = /(?<![\w@/.-])((?:\.\.?\/)?(?:[\w.-]+\/)+[\w.-]+\.(?:ts|mjs|md|yaml|yml|json|sh))\b/g;
for (const f of files) {
  const h = header(readFileSync(join(ROOT, f), 'utf8'));
  const parts = f.split('/');
  const pkg = parts.slice(0, 2).join('/');
  for (const m of h.matchAll(CITED)) {
    const cited = m[1];
    if (/^https?:|example|\{/.test(cited)) continue;
    const bases = [ROOT, join(ROOT, dirname(f)), join(ROOT, pkg), join(ROOT, pkg, 'src')];
    if (!bases.some((b) => existsSync(join(b, cited))))
      problems.push(`header ${f}: cites ${cited}, which does not exist`);
  }
}

// Import cycles.
if (!process.argv.includes('--no-cycles')) {
  const r = spawnSync(
    'npx',
    [
      '--yes',
      MADGE,
      '--circular',
      '--no-spinner',
      '--no-color',
      '--extensions',
      'ts,mjs',
      '--exclude',
      '(node_modules|dist|\\.d\\.ts$)',
      ...SOURCE_DIRS.filter((d) => existsSync(join(ROOT, d))),
    ],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0 || !/No circular dependency found/.test(out)) {
    const cycles = out
      .split('\n')
      .filter((l) => /^\d+\)/.test(l.trim()))
      .map((l) => l.trim());
    if (cycles.length === 0)
      problems.push(`cycles: madge failed (exit ${r.status}): ${out.trim().slice(-300)}`);
    for (const c of cycles) problems.push(`cycle ${c}`);
  }
}

for (const p of problems) console.log(p);
console.log(`structure: ${files.length} files, ${problems.length} problems`);
process.exit(problems.length === 0 ? 0 : 1);
