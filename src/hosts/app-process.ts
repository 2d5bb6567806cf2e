import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { AgentAppStatus, StartAppRequest } from '../shared/contracts.ts';
import { secretEnvNames } from '../shared/cluster-transport.ts';
import { UnderstudyError } from '../shared/errors.ts';

/** An app never sees Understudy's secrets: the API token, nor any variable a secret was read from. */
function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { UNDERSTUDY_TOKEN: _token, ...rest } = env;
  for (const name of secretEnvNames()) delete rest[name];
  return rest;
}

/** How much of the app's output an exit report carries: the last lines, bounded both ways. */
const TAIL_LINES = 20;
const TAIL_BYTES = 8 * 1024;

/**
 * One site's application on a host, started by the agent inside the agent's own
 * process group, so that the relay's cut (SIGKILL of the group) takes it too.
 * Its stdout and stderr go straight to its log file (no pipe through the agent: a
 * busy agent never blocks the app's writes); an exit report carries the file's
 * last lines written since this start (`tail`).
 */
export class AppProcess {
  private child: ChildProcess | null = null;
  private state: AgentAppStatus['state'] = 'stopped';
  private exitCode: number | null = null;
  private signal: string | null = null;
  private spawnError: string | undefined;
  /** Where this start's output begins in the log file. */
  private logStart = 0;
  private since = Date.now();
  epoch = 0;

  constructor(
    readonly site: string,
    private readonly logFile: string,
  ) {}

  status(): AgentAppStatus {
    const base: AgentAppStatus = {
      site: this.site,
      state: this.state,
      pid: this.child?.pid ?? null,
      exitCode: this.exitCode,
      since: this.since,
      logFile: this.logFile,
    };
    if (this.state !== 'exited') return base;
    return { ...base, signal: this.signal, ...(this.spawnError ? { error: this.spawnError } : {}), output: this.tail() };
  }

  isRunning(): boolean {
    return this.state === 'running' || this.state === 'starting';
  }

  start(req: StartAppRequest): void {
    const [cmd, ...args] = req.command;
    if (!cmd) throw new UnderstudyError('US_APP_SPAWN_FAILED', 'empty command');
    const log = fs.openSync(this.logFile, 'a');
    this.logStart = fs.fstatSync(log).size;
    const child = spawn(cmd, args, {
      cwd: req.cwd,
      env: { ...withoutSecrets(process.env), ...req.env, DATA_DIR: req.dataDir, ...(req.mode === 'ro' ? { READ_ONLY: '1' } : {}) },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.child = child;
    this.epoch = req.epoch;
    this.exitCode = null;
    this.signal = null;
    this.spawnError = undefined;
    this.setState('running');
    child.on('error', (e) => {
      if (this.child !== child || child.pid !== undefined) return; // a failed kill, not a failed start
      // The program could not be started (not found, not executable, bad cwd): no exit event follows.
      this.spawnError = e.message;
      this.child = null;
      this.setState('exited');
    });
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.exitCode = code ?? (signal ? 128 : null);
      this.signal = signal;
      this.child = null;
      this.setState(this.state === 'stopped' ? 'stopped' : 'exited');
    });
  }

  /** The last lines the app wrote since it was last started (stdout and stderr), at most TAIL_LINES and TAIL_BYTES. */
  tail(): string[] {
    let fd: number | undefined;
    try {
      fd = fs.openSync(this.logFile, 'r');
      const size = fs.fstatSync(fd).size;
      const from = Math.max(this.logStart, size - TAIL_BYTES);
      const buf = Buffer.alloc(Math.max(0, size - from));
      fs.readSync(fd, buf, 0, buf.length, from);
      let lines = buf.toString('utf8').split(/\r?\n/);
      if (from > this.logStart) lines = lines.slice(1); // the first line was cut
      return lines
        .map((l) => l.trimEnd())
        .filter((l) => l !== '')
        .slice(-TAIL_LINES);
    } catch {
      return [];
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
  async stop(graceMs = 2000): Promise<void> {
    const child = this.child;
    this.setState('stopped');
    if (!child || child.exitCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(t);
  }

  private setState(s: AgentAppStatus['state']): void {
    if (s !== this.state) this.since = Date.now();
    this.state = s;
  }
}
