/**
 * Bundles a test fixture (test/fixtures/*.ts) with Vite into one IIFE script, the way the real
 * widget and console are built, for a test to add to a bare Chromium page.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WEB_ROOT } from '../src/build.ts';

/** Builds `test/fixtures/<fixture>.ts` into `outDir` (global `name`) and returns the script. */
export async function buildFixture(fixture: string, name: string, outDir: string): Promise<string> {
  const { build, defaultClientConditions } = await import('vite');
  await build({
    configFile: false,
    root: WEB_ROOT,
    logLevel: 'warn',
    publicDir: false,
    resolve: { conditions: ['@latchkey/source', ...defaultClientConditions] },
    define: { 'process.env.NODE_ENV': JSON.stringify('production') },
    build: {
      outDir,
      emptyOutDir: true,
      target: 'es2022',
      minify: false,
      reportCompressedSize: false,
      lib: {
        entry: join(WEB_ROOT, 'test', 'fixtures', `${fixture}.ts`),
        formats: ['iife'],
        name,
        fileName: () => `${fixture}.js`,
      },
    },
  });
  return readFile(join(outDir, `${fixture}.js`), 'utf8');
}
