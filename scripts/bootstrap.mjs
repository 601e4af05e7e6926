#!/usr/bin/env node
// Entry point of `npm start` and `npm test` on a fresh machine that has only Node and npm.
// It installs the workspace with the pinned pnpm (through npx, since corepack's signature
// check fails here) when anything is missing or stale, checks that the native SQLite module
// really loads, then runs the requested command. Only Node built-ins are used here.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const pnpmSpec = pkg.packageManager; // e.g. pnpm@10.34.9

function fail(message) {
  process.stderr.write(`bootstrap: ${message}\n`);
  process.exit(1);
}

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    fail(`Node ${process.versions.node} is too old; Latchkey needs Node >= 20.19`);
  }
}

/** True when node_modules matches the lockfile and the native module loads. */
function installed() {
  const lock = join(root, 'pnpm-lock.yaml');
  const done = join(root, 'node_modules', '.pnpm', 'lock.yaml');
  if (!existsSync(done) || readFileSync(lock, 'utf8') !== readFileSync(done, 'utf8')) return false;
  const probe = spawnSync(
    process.execPath,
    ['-e', "const D=require('better-sqlite3'); new D(':memory:').prepare('select 1').get()"],
    { cwd: join(root, 'packages', 'keys'), stdio: 'ignore' },
  );
  return probe.status === 0;
}

function install() {
  process.stderr.write(
    `bootstrap: installing dependencies with ${pnpmSpec} (native modules build from source; this takes a minute)\n`,
  );
  const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
  const args = [
    '--yes',
    pnpmSpec,
    'install',
    '--frozen-lockfile',
    '--config.confirmModulesPurge=false',
  ];
  const result = spawnSync(npx, args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, CI: process.env.CI ?? '' },
  });
  if (result.status !== 0) fail(`dependency install failed (exit ${result.status})`);
  if (!installed())
    fail('install finished but better-sqlite3 does not load; see the build output above');
}

function run(bin, args, after) {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    after?.();
    process.exit(code ?? (signal ? 1 : 0));
  });
}

/** Prints the plain closing line 'vitest: N passed, N failed, N skipped' from the JSON report. */
function summarize(reportFile) {
  try {
    const r = JSON.parse(readFileSync(reportFile, 'utf8'));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    process.stdout.write(
      `\nvitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped\n`,
    );
    rmSync(reportFile, { force: true });
  } catch {
    process.stdout.write('\nvitest: no report written (the run did not finish)\n');
  }
}

checkNode();
if (!installed()) install();

const [command, ...rest] = process.argv.slice(2);
const require = createRequire(import.meta.url);
switch (command) {
  case 'start':
    run(join(root, 'apps', 'cli', 'bin', 'latchkey.mjs'), ['start', ...rest]);
    break;
  case 'test': {
    const report = join(tmpdir(), `latchkey-vitest-${process.pid}.json`);
    const args = [
      'run',
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${report}`,
      ...rest,
    ];
    run(
      join(dirname(require.resolve('vitest/package.json', { paths: [root] })), 'vitest.mjs'),
      args,
      () => summarize(report),
    );
    break;
  }
  case 'install':
    break;
  default:
    fail(`unknown command ${command ?? '(none)'}; use start, test or install`);
}
