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

/** Fields after the command name in /proc/PID/stat: [state, ppid, pgrp, …]. */
function procFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

function procPgrp(pid: number): number | null {
  const f = procFields(pid);
  return f ? Number(f[2]) : null;
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
  // Fast paths: a group whose signal 0 fails has no member at all; a group whose
  // leader (pid = pgid) is alive and still in it is alive. Only a group whose leader
  // died or is a zombie needs the scan of every process below, which costs a file
  // read per process of the machine.
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const leader = procFields(pgid);
  if (leader !== null && leader[0] !== 'Z' && leader[0] !== 'X' && Number(leader[2]) === pgid) return true;
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

let bootId: string | null | undefined;

/**
 * What tells a process apart from a later one that got the same pid: the boot it
 * runs in and its start time (clock ticks after boot, /proc/PID/stat field 22).
 * Null when the process is gone or where /proc is missing.
 */
export function processIdentity(pid: number): string | null {
  if (!hasProc) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    if (bootId === undefined) {
      try {
        bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      } catch {
        bootId = null;
      }
    }
    return startTime ? `${bootId ?? 'boot'}/${startTime}` : null;
  } catch {
    return null;
  }
}

/**
 * True while the process group recorded as `pgid` (its leader's identity taken when
 * it was started) still has a live member and is still the same group. Linux does
 * not give a pid to a new process while a group of that number exists, so a group
 * whose leader is gone is still the recorded one; a leader of another identity is a
 * new group that reused the number (after a reboot, say), which must never be taken
 * for a host. `identity` null (a record older than identities): the group is trusted.
 */
export function isRecordedGroupAlive(pgid: number, identity: string | null): boolean {
  if (!isGroupAlive(pgid)) return false;
  if (identity === null) return true;
  const leader = processIdentity(pgid);
  return leader === null || leader === identity;
}

export interface ProcessInfo {
  pid: number;
  /** The parent; 1 (or a subreaper) once the parent died. */
  ppid: number;
  pgid: number;
  /** The command line, one element per argument. */
  argv: string[];
  /** The working directory, null when it cannot be read. */
  cwd: string | null;
}

/** Every live process of this machine that this user may inspect (Linux; empty elsewhere). */
export function listProcesses(): ProcessInfo[] {
  if (!hasProc) return [];
  const out: ProcessInfo[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const f = procFields(pid);
    if (!f || f[0] === 'Z' || f[0] === 'X') continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv.at(-1) === '') argv.pop();
    let cwd: string | null = null;
    try {
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      /* another user's process */
    }
    out.push({ pid, ppid: Number(f[1]), pgid: Number(f[2]), argv, cwd });
  }
  return out;
}
