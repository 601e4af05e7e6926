#!/usr/bin/env node
// Runs the Chromium history benchmark alone (issue 16): `node bench/bin/chromium.mjs
// [--repeats N] [--messages N] [--profile /tmp/prefix] [--modes full,open,render,history]`;
// prints one JSON line. The tsx loader is registered first: the workspace ships TypeScript source.
import { register } from 'tsx/esm/api';

register();
const { chromiumHistoryBench } = await import('../src/chromium-bench.ts');
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const opts = {};
if (opt('repeats')) opts.repeats = Number(opt('repeats'));
if (opt('messages')) opts.messages = Number(opt('messages'));
if (opt('profile')) opts.profile = opt('profile');
if (opt('modes')) opts.modes = opt('modes').split(',');
console.log(JSON.stringify(await chromiumHistoryBench(opts)));
