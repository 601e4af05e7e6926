/**
 * Bundles the benchmark page (page.ts) in memory with Vite as apps/web/src/build.ts builds the
 * widget: one IIFE script, workspace packages from their TypeScript source through the
 * `@latchkey/source` condition, production mode, minified (unminified when profiling, so that
 * a CPU profile names the functions).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const PAGE_GLOBAL = 'LatchkeyHistoryBench';

/** The page script's source text. @throws when Vite fails or emits no chunk. */
export async function bundlePage(opts: { minify: boolean }): Promise<string> {
  const { build, defaultClientConditions } = await import('vite');
  const out = await build({
    configFile: false,
    root: HERE,
    mode: 'production',
    logLevel: 'warn',
    publicDir: false,
    resolve: { conditions: ['@latchkey/source', ...defaultClientConditions] },
    define: { 'process.env.NODE_ENV': JSON.stringify('production') },
    build: {
      write: false,
      target: 'es2022',
      minify: opts.minify,
      reportCompressedSize: false,
      lib: {
        entry: join(HERE, 'page.ts'),
        formats: ['iife'],
        name: PAGE_GLOBAL,
        fileName: () => 'page.js',
      },
    },
  });
  const outputs = Array.isArray(out) ? out : [out];
  for (const o of outputs) {
    if (!('output' in o)) continue;
    for (const chunk of o.output) if (chunk.type === 'chunk') return chunk.code;
  }
  throw new Error('vite emitted no page chunk');
}
