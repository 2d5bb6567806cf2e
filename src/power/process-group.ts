import fs from 'node:fs';

/**
 * Whether processes are really gone. A SIGKILLed process stays in the process table
 * as a zombie until its parent reaps it, and a host's app may be re-parented to an
 * init that never reaps: "gone" therefore means "no member that is not a zombie".
 * Linux reads /proc; elsewhere signal 0 is the best available answer.
 */

function procState(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: the state follows the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

function procPgrp(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[2]);
  } catch {
    return null;
  }
}

const hasProc = fs.existsSync('/proc/self/stat');

/** True while the process exists and is not a zombie. */
export function isProcessAlive(pid: number): boolean {
  if (hasProc) {
    const s = procState(pid);
    return s !== null && s !== 'Z' && s !== 'X';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True while any member of the process group is alive (not a zombie). */
export function isGroupAlive(pgid: number): boolean {
  if (!hasProc) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  // Fast path: a group whose signal 0 fails has no member at all.
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    if (procPgrp(pid) === pgid) {
      const s = procState(pid);
      if (s !== null && s !== 'Z' && s !== 'X') return true;
    }
  }
  return false;
}

/** SIGKILL to the whole group; ESRCH (already gone) is not an error. */
export function killGroup(pgid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-pgid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}
