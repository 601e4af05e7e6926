/**
 * The SDK as someone outside the monorepo gets it (README "Using the SDK from npm"): the public
 * packages are built to JavaScript with declarations (`npm run build`), packed with pnpm (which
 * turns `workspace:*` into versions and `publishConfig.exports` into the published `exports`),
 * and installed with npm into an empty project in a temporary directory, next to `ws` from the
 * registry. A plain Node script there mints participant tokens with the API secret, connects a
 * visitor and an agent to a real `latchkey start` (port 0) and chats; a TypeScript file there
 * type-checks against the installed declarations.
 *
 * Needs the npm registry (or the local npm cache) for the packages' own dependencies: when it is
 * unreachable the test is skipped with the reason printed, except under CI, where it fails.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '@latchkey/protocol';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'npm-consumer');
const BIN = join(ROOT, 'apps', 'cli', 'bin', 'latchkey.mjs');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const PNPM = 'pnpm@10.34.9';
/** The public packages, in build order. */
const PACKAGES = ['crypto', 'protocol', 'tokens', 'client'] as const;
const NAMES = new Set(PACKAGES.map((p) => `@latchkey/${p}`));
const STEP_MS = 180_000;

interface Run {
  stdout: string;
  stderr: string;
}

/** Runs a program to its end; rejects with its output when it fails or outlives `timeout`. */
function run(
  file: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number },
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: opts.cwd,
        env: { ...process.env, ...opts.env },
        timeout: opts.timeout ?? STEP_MS,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`),
          );
        } else resolve({ stdout, stderr });
      },
    );
  });
}

/** Whether the npm registry answers (`npm ping`), and if not, why. */
async function registry(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await run('npm', ['ping'], { cwd: tmpdir(), timeout: 20_000 });
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message.split('\n')[0] ?? 'npm ping failed' };
  }
}

const reach = await registry();
const skip = !reach.ok && !process.env.CI;
if (!reach.ok) {
  console.warn(
    `npm-pack: the npm registry is unreachable (${reach.reason})` +
      (skip ? ': skipped (set CI=true to fail instead)' : ''),
  );
}

interface Installed {
  name: string;
  version: string;
  exports: Record<string, unknown>;
  dependencies?: Record<string, string>;
}

let work: string;
let packs: string;
let project: string;
let data: string;
let server: ChildProcess | undefined;
const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
const urls: Record<string, string> = {};

/** `latchkey start` on port 0 with our API secret; resolves once it prints `ready`. */
async function startLatchkey(): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'start', '--data', data, '--port', '0'], {
    cwd: ROOT,
    env: { ...process.env, LATCHKEY_API_SECRET: secret },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server = child;
  const output: string[] = [];
  child.stderr!.on('data', (b: Buffer) => output.push(b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`latchkey start did not print ready:\n${output.join('\n')}`)),
      STEP_MS,
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      const m = /^(relay|keys): (.+)$/.exec(line);
      if (m?.[1] && m[2]) urls[m[1]] = m[2];
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`latchkey start exited with ${code}:\n${output.join('\n')}`));
    });
  });
}

beforeAll(async () => {
  if (skip) return;
  if (!reach.ok) throw new Error(`CI=true and the npm registry is unreachable: ${reach.reason}`);
  work = await mkdtemp(join(tmpdir(), 'latchkey-npm-'));
  packs = join(work, 'packs');
  project = join(work, 'project');
  data = join(work, 'data');
  // The server starts (and builds its web bundles when stale) while the SDK is built and packed.
  const started = startLatchkey();
  started.catch(() => undefined);
  await run(
    process.execPath,
    [TSC, '-b', ...PACKAGES.map((p) => `packages/${p}/tsconfig.build.json`)],
    {
      cwd: ROOT,
    },
  );
  for (const p of PACKAGES) {
    await run('npx', ['--yes', PNPM, 'pack', '--pack-destination', packs], {
      cwd: join(ROOT, 'packages', p),
    });
  }
  const tarballs = (await readdir(packs)).filter((f) => f.endsWith('.tgz')).sort();
  expect(tarballs).toHaveLength(PACKAGES.length);
  const client = JSON.parse(
    await readFile(join(ROOT, 'packages', 'client', 'package.json'), 'utf8'),
  ) as { devDependencies: Record<string, string> };
  await mkdir(project);
  await run('npm', ['init', '-y'], { cwd: project });
  await run(
    'npm',
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--no-package-lock',
      ...tarballs.map((t) => join(packs, t)),
      `ws@${client.devDependencies.ws ?? 'latest'}`,
    ],
    { cwd: project },
  );
  for (const f of ['chat.mjs', 'consumer.ts']) await copyFile(join(FIXTURES, f), join(project, f));
  await started;
}, 2 * STEP_MS);

afterAll(async () => {
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((r) => server!.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  if (work) await rm(work, { recursive: true, force: true });
});

async function installed(name: string): Promise<Installed> {
  return JSON.parse(
    await readFile(join(project, 'node_modules', ...name.split('/'), 'package.json'), 'utf8'),
  ) as Installed;
}

describe.skipIf(skip)('the SDK packed and installed from npm tarballs', () => {
  it('depends only on the other packed packages (versions, not workspace:) and the registry', async () => {
    for (const name of NAMES) {
      const pkg = await installed(name);
      for (const [dep, spec] of Object.entries(pkg.dependencies ?? {})) {
        expect(spec, `${name} -> ${dep}`).toMatch(/^\^?~?\d+\.\d+\.\d+(-[\w.]+)?$/);
        if (dep.startsWith('@latchkey/')) {
          expect(NAMES.has(dep), `${name} -> ${dep}`).toBe(true);
          expect(spec).toBe((await installed(dep)).version);
        }
      }
    }
  });

  it('exports the built JavaScript with declarations, not the TypeScript source', async () => {
    for (const name of NAMES) {
      const pkg = await installed(name);
      const dir = join(project, 'node_modules', ...name.split('/'));
      expect(JSON.stringify(pkg.exports)).not.toContain('@latchkey/source');
      for (const [sub, target] of Object.entries(pkg.exports)) {
        const t = target as { types: string; node?: string; default: string };
        // A `node` condition (the node:crypto entries of @latchkey/crypto) may sit between them.
        const keys = Object.keys(t).filter((k) => k !== 'node');
        expect(keys, `${name} ${sub}`).toEqual(['types', 'default']);
        expect(t.types).toMatch(/^\.\/dist\/.+\.d\.ts$/);
        expect(t.default).toMatch(/^\.\/dist\/.+\.js$/);
        await readFile(join(dir, t.types));
        await readFile(join(dir, t.default));
        if (t.node !== undefined) {
          expect(t.node).toMatch(/^\.\/dist\/node\/.+\.js$/);
          await readFile(join(dir, t.node));
        }
      }
      const files = await readdir(dir);
      expect(files).not.toContain('src');
    }
  });

  it('a Node script there mints tokens, connects to latchkey start and chats', async () => {
    const { stdout } = await run(process.execPath, ['chat.mjs'], {
      cwd: project,
      env: {
        LATCHKEY_API_SECRET: secret,
        LATCHKEY_RELAY_URL: urls.relay,
        LATCHKEY_KEYS_URL: urls.keys,
      },
      timeout: 60_000,
    });
    const out = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
    expect(out).toEqual({
      protocol: PROTOCOL_VERSION,
      seq: 1,
      received: { text: 'hello from an npm install', senderId: 'v1', role: 'visitor' },
      answer: { text: 'hello back', senderId: 'a1' },
      sameKey: true,
      history: [
        [1, 'v1', 'hello from an npm install'],
        [2, 'a1', 'hello back'],
      ],
    });
  });

  it('TypeScript there type-checks against the installed declarations', async () => {
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          typeRoots: [join(ROOT, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['consumer.ts'],
      }),
    );
    await run(process.execPath, [TSC, '-p', '.'], { cwd: project });
  });
});
