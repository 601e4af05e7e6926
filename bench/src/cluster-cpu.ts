/**
 * CPU per component of the cluster benchmark, from /proc (proc(5)): `utime + stime` of
 * /proc/<pid>/stat (all threads of the process) for each named group of processes, plus the
 * whole machine's busy time from /proc/stat. A group is either a list of pids or a process tree
 * (PostgreSQL: the postmaster and its backends, one per pooled connection). Two snapshots give
 * each group's share of one core over the window between them, so "which process saturates
 * first" can be read off at 100%.
 */
import { readFileSync, readdirSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux (getconf CLK_TCK)

export interface CpuGroup {
  name: string;
  /** These pids (each with all its threads). */
  pids?: number[];
  /** This pid and every descendant alive at the snapshot. */
  tree?: number;
}

export interface CpuSnapshot {
  at: number;
  /** Ticks per group, and per pid within each group (for the busiest member). */
  groups: Record<string, { total: number; byPid: Record<number, number> }>;
  /** Machine: busy and total jiffies over all cores. */
  machineBusy: number;
  machineTotal: number;
}

export interface CpuUsage {
  /** Group → % of one core over the window (sum of its processes). */
  percent: Record<string, number>;
  /** Group → % of one core of its busiest single process. */
  busiestPercent: Record<string, number>;
  /** The whole machine: % of all cores busy (100 = every core busy). */
  machinePercent: number;
  seconds: number;
}

function statOf(pid: number): { ppid: number; ticks: number } | undefined {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces: fields are counted after its ')'.
  const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
}

function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = statOf(pid);
    if (s) parent.set(pid, s.ppid);
  }
  const out = [root];
  let added = true;
  const inTree = new Set(out);
  while (added) {
    added = false;
    for (const [pid, ppid] of parent)
      if (!inTree.has(pid) && inTree.has(ppid)) {
        inTree.add(pid);
        out.push(pid);
        added = true;
      }
  }
  return out;
}

function machine(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is counted inside user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

export function cpuSnapshot(groups: readonly CpuGroup[]): CpuSnapshot {
  const out: CpuSnapshot['groups'] = {};
  for (const g of groups) {
    const pids = [...(g.pids ?? []), ...(g.tree === undefined ? [] : descendants(g.tree))];
    const byPid: Record<number, number> = {};
    let total = 0;
    for (const pid of pids) {
      const s = statOf(pid);
      if (!s) continue;
      byPid[pid] = s.ticks;
      total += s.ticks;
    }
    out[g.name] = { total, byPid };
  }
  const m = machine();
  return { at: performance.now(), groups: out, machineBusy: m.busy, machineTotal: m.total };
}

const pct = (ticks: number, seconds: number): number =>
  Math.round((ticks / TICKS_PER_SECOND / seconds) * 1000) / 10;

/** Each group's CPU between two snapshots (processes that appeared in between count from 0). */
export function cpuUsage(a: CpuSnapshot, b: CpuSnapshot): CpuUsage {
  const seconds = (b.at - a.at) / 1000;
  const percent: Record<string, number> = {};
  const busiestPercent: Record<string, number> = {};
  for (const [name, g] of Object.entries(b.groups)) {
    const before = a.groups[name]?.byPid ?? {};
    let total = 0;
    let top = 0;
    for (const [pid, ticks] of Object.entries(g.byPid)) {
      const d = ticks - (before[Number(pid)] ?? 0);
      total += d;
      top = Math.max(top, d);
    }
    percent[name] = pct(total, seconds);
    busiestPercent[name] = pct(top, seconds);
  }
  const busy = b.machineBusy - a.machineBusy;
  const total = b.machineTotal - a.machineTotal;
  return {
    percent,
    busiestPercent,
    machinePercent: total > 0 ? Math.round((busy / total) * 1000) / 10 : 0,
    seconds: Math.round(seconds * 10) / 10,
  };
}
