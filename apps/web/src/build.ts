/**
 * Builds the browser bundles with Vite: `widget.js` (visitor widget) and `agent.js` (agent
 * console), each one IIFE script, plus the static pages of `public/`. Workspace packages resolve
 * to their TypeScript source through the `@latchkey/source` condition, so the browser runs the
 * very same @latchkey/client and @latchkey/crypto code as Node.
 *
 * `ensureBuilt` rebuilds only when the output is missing or older than any source it comes from,
 * or was built in the other mode, under a lock directory so that concurrent starts (tests,
 * `latchkey start`) build once.
 *
 * Source maps only in development: a production build (the default) emits no `.map` file and
 * no `sourceMappingURL`, so what is served does not hand out the readable source (issue 13).
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_DIST = join(WEB_ROOT, 'dist');
const STAMP = '.build-stamp';

export interface BuildOptions {
  /** Development build: with source maps (`.map` files and `sourceMappingURL`). Default false. */
  development?: boolean;
}

/** What the stamp records: when, and in which mode (a build of the other mode is stale). */
function stampText(development: boolean): string {
  return `${new Date().toISOString()} ${development ? 'development' : 'production'}\n`;
}

/** Everything the bundles are made of. */
export function sourceDirs(): string[] {
  const packages = resolve(WEB_ROOT, '..', '..', 'packages');
  return [
    join(WEB_ROOT, 'src'),
    join(WEB_ROOT, 'public'),
    join(packages, 'client', 'src'),
    join(packages, 'crypto', 'src'),
    join(packages, 'protocol', 'src'),
  ];
}

const BUNDLES = [
  { name: 'widget', global: 'LatchkeyWidget', entry: 'src/widget/main.ts' },
  { name: 'agent', global: 'LatchkeyAgent', entry: 'src/agent/main.ts' },
] as const;

/** Runs the Vite builds into `outDir` (emptied first). */
export async function buildWeb(outDir: string, opts: BuildOptions = {}): Promise<void> {
  const development = opts.development === true;
  const { build, defaultClientConditions } = await import('vite');
  await rm(outDir, { recursive: true, force: true });
  for (const [i, b] of BUNDLES.entries()) {
    await build({
      configFile: false,
      root: WEB_ROOT,
      mode: development ? 'development' : 'production',
      logLevel: 'warn',
      publicDir: join(WEB_ROOT, 'public'),
      resolve: { conditions: ['@latchkey/source', ...defaultClientConditions] },
      define: { 'process.env.NODE_ENV': JSON.stringify('production') },
      build: {
        outDir,
        emptyOutDir: false,
        copyPublicDir: i === 0,
        target: 'es2022',
        sourcemap: development,
        minify: true,
        reportCompressedSize: false,
        lib: {
          entry: join(WEB_ROOT, b.entry),
          formats: ['iife'],
          name: b.global,
          fileName: () => `${b.name}.js`,
        },
      },
    });
  }
  await writeFile(join(outDir, STAMP), stampText(development));
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestMtime(p));
    else if (!e.name.endsWith('.test.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/** True when `outDir` holds a complete build of this mode, newer than every source file. */
export async function isFresh(outDir: string, opts: BuildOptions = {}): Promise<boolean> {
  let built: number;
  try {
    built = (await stat(join(outDir, STAMP))).mtimeMs;
    const mode = (await readFile(join(outDir, STAMP), 'utf8')).trim().split(' ')[1];
    // A stamp without a mode comes from before production builds dropped their source maps.
    if (mode !== (opts.development === true ? 'development' : 'production')) return false;
  } catch {
    return false;
  }
  const sources = await Promise.all(sourceDirs().map(newestMtime));
  return Math.max(...sources) <= built;
}

const LOCK_STALE_MS = 120_000;

/** A lock left by a builder that died, or older than any build takes. */
async function lockIsStale(lock: string): Promise<boolean> {
  const age =
    Date.now() -
    (await stat(lock).then(
      (s) => s.mtimeMs,
      () => Date.now(),
    ));
  if (age > LOCK_STALE_MS) return true;
  const pid = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => ''));
  if (!Number.isInteger(pid) || pid <= 0) return age > 5_000; // still being written, or foreign
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Builds into `outDir` unless it is fresh. Builds into a temporary directory and swaps it in,
 * so a server never serves half a build.
 * @returns whether it built
 */
export async function ensureBuilt(
  outDir: string = DEFAULT_DIST,
  opts: BuildOptions = {},
): Promise<boolean> {
  if (await isFresh(outDir, opts)) return false;
  const lock = `${outDir}.lock`;
  await mkdir(dirname(outDir), { recursive: true });
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (await lockIsStale(lock)) await rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (await isFresh(outDir, opts)) return false;
    const tmp = `${outDir}.tmp-${process.pid}-${Date.now()}`;
    const old = `${outDir}.old-${process.pid}-${Date.now()}`;
    await buildWeb(tmp, opts);
    await rename(outDir, old).catch(() => undefined);
    await rename(tmp, outDir);
    await rm(old, { recursive: true, force: true });
    return true;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}
