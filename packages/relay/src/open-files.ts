/**
 * Start-up check of the open-files limit (issue 13 item 9; docs/operations.md "Open files"):
 * every connection holds a file descriptor, so the connection caps only protect the process when
 * the limit is above them. Node has no setrlimit: the limit is read from /proc/self/limits
 * (Linux), the soft limit raised to the hard one with `prlimit` when it is too low (Node itself
 * usually did so at start), and what is still too low is reported in one line.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** File descriptors a process needs besides its connections (databases, logs, pools). */
export const OPEN_FILES_RESERVE = 256;

/**
 * Returns one line to print on stderr when the open-files soft limit stays below `needed`
 * after trying to raise it, else null (also off Linux, where nothing is checked).
 */
export function checkOpenFiles(needed: number, who: string): string | null {
  const read = (): { soft: number; hard: number } | null => {
    try {
      const line = readFileSync('/proc/self/limits', 'utf8')
        .split('\n')
        .find((x) => x.startsWith('Max open files'));
      const m = line && /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
      if (!m) return null;
      const n = (s: string | undefined): number => (s === 'unlimited' ? Infinity : Number(s));
      return { soft: n(m[1]), hard: n(m[2]) };
    } catch {
      return null;
    }
  };
  let lim = read();
  if (lim === null || lim.soft >= needed) return null;
  if (lim.hard > lim.soft) {
    try {
      const hard = Number.isFinite(lim.hard) ? String(lim.hard) : 'unlimited';
      spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], {
        stdio: 'ignore',
        timeout: 2000,
      });
    } catch {
      // no prlimit: report below
    }
    lim = read() ?? lim;
    if (lim.soft >= needed) return null;
  }
  return (
    `${who}: open-files limit ${lim.soft} (hard ${lim.hard}) is below the ${needed} the connection caps need; ` +
    'raise it (ulimit -n, systemd LimitNOFILE=) or lower the caps (docs/operations.md)'
  );
}
