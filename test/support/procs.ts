import { spawn, type ChildProcess } from 'node:child_process';
import { background } from '../../src/shared/background.ts';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/understudy.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Test support: what really runs, read from /proc, and `up` started the way a
 * terminal starts it (a process group of its own, which the test then signals as a
 * terminal would).
 */

export interface Proc {
  pid: number;
  pgid: number;
  argv: string[];
  /** DATA_DIR from its environment (a host's app), if any. */
  dataDir: string | null;
}

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Interrupts `child` (SIGINT) and kills it (SIGKILL) if it has not exited within `graceMs`; nothing when it has exited already. */
export async function interruptThenKill(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    exited,
    new Promise((r) => {
      timer = setTimeout(r, graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/**
 * Every live process whose command line or environment mentions `dir` (a test's
 * temporary directory: the config path, the state and storage paths, an app's
 * DATA_DIR). Zombies are not processes any more and are left out.
 */
export function processesOf(dir: string): Proc[] {
  const found: Proc[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    const stat = read(`/proc/${pid}/stat`);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') continue;
    const cmdline = read(`/proc/${pid}/cmdline`) ?? '';
    const environ = read(`/proc/${pid}/environ`) ?? '';
    if (!cmdline.includes(dir) && !environ.includes(dir)) continue;
    const dataDir =
      environ
        .split('\0')
        .find((e) => e.startsWith('DATA_DIR='))
        ?.slice('DATA_DIR='.length) ?? null;
    found.push({ pid, pgid: Number(fields[2]), argv: cmdline.split('\0').filter((a) => a !== ''), dataDir });
  }
  return found;
}

/** Last resort of a test's cleanup: SIGKILL every process (and its group, when it leads one) that mentions `dir`. */
export function killProcessesOf(dir: string): void {
  for (const p of processesOf(dir)) {
    try {
      process.kill(p.pgid === p.pid ? -p.pid : p.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
}

export interface TerminalUp {
  /** The shell's pid: the leader of the group a terminal would signal. */
  pgid: number;
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** Resolves once `up` printed that it is up; rejects if it exited first or after `timeoutMs`. */
  waitUp: (timeoutMs?: number) => Promise<void>;
}

/**
 * `understudy up -c FILE` as `npm start` runs it from a terminal: through `sh -c`,
 * as the leader of a new process group (the terminal's foreground job), its output
 * collected. The caller signals the group (`process.kill(-pgid, 'SIGINT')`) and
 * must kill the group in its cleanup.
 */
export function startTerminalUp(configFile: string, env: Record<string, string> = {}): TerminalUp {
  const child = spawn('sh', ['-c', `exec "${process.execPath}" "${BIN}" up -c "${configFile}"`], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UNDERSTUDY_LOG_LEVEL: 'warn', ...env },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) => {
    child.once('exit', (code, signal) => r({ code, signal, at: Date.now() }));
  });
  let gone = false;
  background(
    exited.then(() => {
      gone = true;
    }),
  );
  return {
    pgid: child.pid!,
    child,
    output: () => out,
    exited,
    waitUp: async (timeoutMs = 90_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!out.includes('understudy is up')) {
        if (gone || Date.now() > deadline) throw new Error(`understudy up did not come up:\n${out}`);
        await sleep(100);
      }
    },
  };
}

/** The live storage processors named `name` among the processes of `dir` (a test's temporary directory). */
export function storageProcesses(dir: string, name: string): Proc[] {
  return processesOf(dir).filter((p) => p.argv.includes('storage') && p.argv[p.argv.indexOf('--name') + 1] === name);
}
