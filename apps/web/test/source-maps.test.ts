/**
 * No source maps outside development (issue 13 point 10): what `startWeb` serves by default
 * carries no `.map` file and no `sourceMappingURL`, and a build made for development (which has
 * them) is rebuilt without them before a default server serves it, which also refuses a stray
 * `.map` file. Only `development: true` builds and serves them.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWeb, type RunningWeb, type WebOptions } from '../src/index.ts';

const BASE: WebOptions = {
  host: '127.0.0.1',
  port: 0,
  apiSecret: new Uint8Array(32).fill(9),
  relayUrl: 'ws://127.0.0.1:1',
  keysUrl: 'http://127.0.0.1:2',
  serviceKey: 'A'.repeat(43),
};

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

async function servedScripts(
  web: RunningWeb,
): Promise<{ body: string; map: number; mapHeader: string | null }[]> {
  const out = [];
  for (const name of ['widget.js', 'agent.js']) {
    const res = await fetch(`${web.url}/${name}`);
    expect(res.status).toBe(200);
    const body = await res.text();
    const map = (await fetch(`${web.url}/${name}.map`)).status;
    out.push({
      body,
      map,
      mapHeader: res.headers.get('sourcemap') ?? res.headers.get('x-sourcemap'),
    });
  }
  return out;
}

describe('source maps', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'latchkey-web-maps-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a development build has them; a default server rebuilds it without any and serves none', async () => {
    const dist = join(dir, 'dist');
    const dev = await startWeb({ ...BASE, distDir: dist, development: true });
    try {
      expect((await files(dist)).some((f) => f.endsWith('.map'))).toBe(true);
      const scripts = await servedScripts(dev);
      expect(scripts.every((s) => s.body.includes('sourceMappingURL=') && s.map === 200)).toBe(
        true,
      );
    } finally {
      await dev.close();
    }

    const web = await startWeb({ ...BASE, distDir: dist });
    try {
      const all = await files(dist);
      expect(all.filter((f) => f.endsWith('.map'))).toEqual([]);
      for (const f of all.filter((x) => /\.(js|html|css)$/.test(x)))
        expect(await readFile(f, 'utf8'), f).not.toContain('sourceMappingURL');
      for (const s of await servedScripts(web)) {
        expect(s.body).not.toContain('sourceMappingURL');
        expect(s.map).toBe(404);
        expect(s.mapHeader).toBeNull();
      }
    } finally {
      await web.close();
    }

    // A stray map left in a production dist/ is not served either.
    await writeFile(join(dist, 'widget.js.map'), '{"version":3}');
    const again = await startWeb({ ...BASE, distDir: dist });
    try {
      expect((await fetch(`${again.url}/widget.js.map`)).status).toBe(404);
      expect((await fetch(`${again.url}/widget.js`)).status).toBe(200);
    } finally {
      await again.close();
    }
  }, 240_000);
});
