/**
 * A hand-written SVG bar chart of a full run: delivered messages/s (200 B) per system and the
 * wire p99 latency at the fixed offered rate, each bar the median with a min–max whisker.
 */
import type { LoadResult } from './load-result.ts';

const LABEL: Record<string, string> = {
  latchkey: 'Latchkey',
  ws: 'ws floor',
  socketio: 'Socket.IO',
};
const COLOR: Record<string, string> = { latchkey: '#2f6fde', ws: '#8a8a8a', socketio: '#e0842b' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

function panel(
  x0: number,
  title: string,
  unit: string,
  bars: { key: string; values: number[] }[],
): string {
  const w = 330;
  const h = 220;
  const top = 50;
  const max = Math.max(1, ...bars.flatMap((b) => b.values)) * 1.15;
  const y = (v: number): number => top + h - (v / max) * h;
  let out = `<text x="${x0 + w / 2}" y="28" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`;
  out += `<line x1="${x0}" y1="${top + h}" x2="${x0 + w}" y2="${top + h}" stroke="#333"/>`;
  bars.forEach((b, i) => {
    const s = [...b.values].sort((p, q) => p - q);
    const med = s[Math.floor((s.length - 1) / 2)] ?? 0;
    const bx = x0 + 25 + i * 105;
    out += `<rect x="${bx}" y="${y(med)}" width="70" height="${top + h - y(med)}" fill="${COLOR[b.key] ?? '#555'}"/>`;
    if (s.length > 1) {
      const lo = s[0] ?? med;
      const hi = s[s.length - 1] ?? med;
      out += `<line x1="${bx + 35}" y1="${y(lo)}" x2="${bx + 35}" y2="${y(hi)}" stroke="#000" stroke-width="2"/>`;
      out += `<line x1="${bx + 27}" y1="${y(hi)}" x2="${bx + 43}" y2="${y(hi)}" stroke="#000"/>`;
      out += `<line x1="${bx + 27}" y1="${y(lo)}" x2="${bx + 43}" y2="${y(lo)}" stroke="#000"/>`;
    }
    out += `<text x="${bx + 35}" y="${y(med) - 6}" text-anchor="middle" font-size="12">${esc(String(med))}${unit}</text>`;
    out += `<text x="${bx + 35}" y="${top + h + 18}" text-anchor="middle" font-size="12">${esc(LABEL[b.key] ?? b.key)}</text>`;
  });
  return out;
}

export function renderChart(
  load: readonly LoadResult[],
  summary: { offered_rate_for_latency: number },
): string {
  const systems = ['latchkey', 'ws', 'socketio'];
  const of = (k: string): LoadResult[] => load.filter((l) => l.system === k && l.size === 200);
  const tput = systems.map((key) => ({
    key,
    values: of(key).map((l) => l.throughput.deliveredPerSecond),
  }));
  const p99 = systems.map((key) => ({ key, values: of(key).map((l) => l.latency.wire.p99) }));
  return [
    '<svg xmlns="http://www.w3.org/2000/svg" width="720" height="320" font-family="sans-serif">',
    '<rect width="720" height="320" fill="#fff"/>',
    panel(20, 'Delivered msg/s, 1,000 connections, 200 B', '', tput),
    panel(380, `p99 latency (ms) at ${summary.offered_rate_for_latency} msg/s offered`, '', p99),
    '<text x="360" y="310" text-anchor="middle" font-size="11" fill="#555">bars: median of repeats; whiskers: min–max</text>',
    '</svg>',
    '',
  ].join('\n');
}
