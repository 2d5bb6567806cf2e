import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { UnderstudyConfig } from '../config/types.ts';
import { isGroupAlive, isProcessAlive, killGroup, listProcesses, type ProcessInfo } from '../power/process-group.ts';
import { UnderstudyError } from '../shared/errors.ts';

/** A process `up` runs: a storage processor, the director or the controller. */
export interface PartSpec {
  name: string;
  /** Arguments after the CLI entry point (`['director', '-c', FILE]`). */
  args: string[];
  url: string;
  /** Options for Node itself, before the entry point (`--max-semi-space-size=32`). */
  nodeArgs?: string[];
}

/** The subcommands whose processes are `up`'s parts (agents are hosts: the relay's). */
const PART_COMMANDS = ['controller', 'director', 'storage'];

export function partLogFile(logDir: string, name: string): string {
  return path.join(logDir, `${name.replace(/\s+/g, '-')}.log`);
}

/**
 * The parts `up` starts, each the leader of its own process group and session
 * (`detached`), so that what the terminal sends to `up`'s group (Ctrl-C's SIGINT, a
 * hangup) does not reach them: `up` alone decides when and in which order they stop.
 * A part that exits while the supervisor is not stopping is reported to `onExit`
 * (which restarts it, or fails the start).
 */
export class PartSupervisor {
  private readonly children = new Map<string, ChildProcess>();
  private stopping = false;

  constructor(
    private readonly o: {
      /** The CLI entry point the parts run. */
      bin: string;
      cwd: string;
      logDir: string;
      env: NodeJS.ProcessEnv;
      onExit: (spec: PartSpec, how: string) => void;
    },
  ) {}

  start(spec: PartSpec): void {
    if (this.stopping) return;
    const log = fs.openSync(partLogFile(this.o.logDir, spec.name), 'a');
    const child = spawn(process.execPath, [...(spec.nodeArgs ?? []), this.o.bin, ...spec.args], {
      cwd: this.o.cwd,
      stdio: ['ignore', log, log],
      env: this.o.env,
      detached: true,
    });
    fs.closeSync(log);
    this.children.set(spec.name, child);
    let reported = false;
    const exited = (how: string): void => {
      if (reported || this.children.get(spec.name) !== child) return;
      reported = true;
      this.children.delete(spec.name);
      if (!this.stopping) this.o.onExit(spec, how);
    };
    child.on('error', (e) => exited(`could not start: ${e.message}`));
    child.on('exit', (code, signal) => exited(signal ?? `code ${code}`));
  }

  /** The pid (= process group) of a running part. */
  pid(name: string): number | undefined {
    return this.children.get(name)?.pid;
  }

  /** From now on no part is started or restarted. */
  beginStop(): void {
    this.stopping = true;
  }

  /**
   * Stops these parts together: SIGTERM to each one's group, SIGKILL to the group of
   * any still running after `graceMs`; resolves once no process of those groups is
   * left (or `graceMs` + 1 s at most). Returns how each running one ended, for the operator.
   */
  async stop(names: string[], graceMs: number): Promise<string[]> {
    this.beginStop();
    const lines = await Promise.all(
      names.map(async (name) => {
        const child = this.children.get(name);
        const pid = child?.pid;
        if (!child || pid === undefined) return null;
        const t0 = Date.now();
        const exited = new Promise<void>((r) => {
          if (child.exitCode !== null || child.signalCode !== null) r();
          else child.once('exit', () => r());
        });
        killGroup(pid, 'SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), graceMs);
          }),
        ]);
        clearTimeout(timer);
        if (!inTime || isGroupAlive(pid)) killGroup(pid, 'SIGKILL');
        await waitGone(pid, 1000);
        this.children.delete(name);
        return inTime ? `${name} stopped (${Date.now() - t0} ms)` : `${name} killed: still running ${graceMs} ms after SIGTERM`;
      }),
    );
    return lines.filter((l): l is string => l !== null);
  }

  /** SIGKILL to every part's group at once; resolves once they are gone (1 s at most). */
  async killAll(): Promise<void> {
    this.beginStop();
    const pids = [...this.children.values()].map((c) => c.pid).filter((p): p is number => p !== undefined);
    for (const pid of pids) killGroup(pid, 'SIGKILL');
    await Promise.all(pids.map((pid) => waitGone(pid, 1000)));
    this.children.clear();
  }
}

async function waitGone(pgid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isGroupAlive(pgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

export interface LeftoverPart {
  /** `controller`, `director`, `storage NAME` (with ` with controller`). */
  name: string;
  pid: number;
  pgid: number;
  /** The controller, or a storage processor that runs it. */
  controller: boolean;
}

/**
 * Parts of this config that run without this `up`: started from the same config file
 * in the same working directory (the one `up` starts them in). Their command lines
 * say what they are, whatever started them.
 */
export function findParts(config: UnderstudyConfig, processes: ProcessInfo[] = listProcesses()): (LeftoverPart & { ppid: number })[] {
  const file = path.resolve(config.file);
  const cwd = path.resolve(config.baseDir);
  const found: (LeftoverPart & { ppid: number })[] = [];
  for (const p of processes) {
    if (p.pid === process.pid || p.cwd !== cwd) continue;
    const at = p.argv.findIndex((a) => PART_COMMANDS.includes(a));
    if (at < 0) continue;
    const args = p.argv.slice(at + 1);
    const value = (...names: string[]): string | undefined => {
      const i = args.findIndex((a) => names.includes(a));
      return i >= 0 ? args[i + 1] : undefined;
    };
    const cfg = value('-c', '--config');
    if (!cfg || path.resolve(cwd, cfg) !== file) continue;
    const command = p.argv[at]!;
    const withController = command === 'storage' && args.includes('--with-controller');
    const name = command === 'storage' ? `storage ${value('--name') ?? '?'}${withController ? ' with controller' : ''}` : command;
    found.push({ name, pid: p.pid, pgid: p.pgid, ppid: p.ppid, controller: command === 'controller' || withController });
  }
  return found;
}

/** Whether a process is `understudy up` (its command line has the `up` subcommand after the CLI entry point). */
function isUp(p: ProcessInfo | undefined): boolean {
  return !!p && p.argv.slice(1, 4).includes('up');
}

/**
 * Before `up` starts anything: the parts an earlier `up` of this config left
 * running (it was SIGKILLed, or died) are stopped, the controller first so that it
 * takes no action meanwhile, then the others; each gets SIGTERM and, after
 * `graceMs`, SIGKILL. Their hosts are not touched here (the relay's `reclaim`).
 * Throws US_ALREADY_RUNNING when their `up` still lives: that one owns them.
 */
export async function stopLeftoverParts(config: UnderstudyConfig, out: (line: string) => void, graceMs: number): Promise<LeftoverPart[]> {
  const processes = listProcesses();
  const parts = findParts(config, processes);
  const owner = parts.map((p) => processes.find((q) => q.pid === p.ppid)).find(isUp);
  if (owner) {
    throw new UnderstudyError(
      'US_ALREADY_RUNNING',
      `another understudy up (pid ${owner.pid}) runs ${config.file} from ${config.baseDir}: stop it first (Ctrl-C in its terminal, or kill ${owner.pid})`,
      { pid: owner.pid },
    );
  }
  const stopAll = async (group: LeftoverPart[]): Promise<void> => {
    await Promise.all(
      group.map(async (p) => {
        out(`  ! ${p.name} (pid ${p.pid}) was left running by an earlier up: stopping it`);
        // A part leads its own group; one started by an older `up` shares that up's group
        // (perhaps with a shell's job): then only the process itself is signalled.
        const signal = (s: NodeJS.Signals): void => {
          if (p.pgid === p.pid) killGroup(p.pid, s);
          else
            try {
              process.kill(p.pid, s);
            } catch {
              /* gone */
            }
        };
        signal('SIGTERM');
        const alive = (): boolean => (p.pgid === p.pid ? isGroupAlive(p.pid) : isProcessAlive(p.pid));
        const deadline = Date.now() + graceMs;
        while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        if (alive()) signal('SIGKILL');
        const gone = Date.now() + 1000;
        while (alive() && Date.now() < gone) await new Promise((r) => setTimeout(r, 10));
      }),
    );
  };
  await stopAll(parts.filter((p) => p.controller));
  await stopAll(parts.filter((p) => !p.controller));
  return parts;
}
