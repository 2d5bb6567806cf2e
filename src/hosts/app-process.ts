import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { AgentAppStatus, StartAppRequest } from '../shared/contracts.ts';

function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { UNDERSTUDY_TOKEN: _token, ...rest } = env;
  return rest;
}

/**
 * One site's application on a host, started by the agent inside the agent's own
 * process group, so that the relay's cut (SIGKILL of the group) takes it too.
 */
export class AppProcess {
  private child: ChildProcess | null = null;
  private state: AgentAppStatus['state'] = 'stopped';
  private exitCode: number | null = null;
  private since = Date.now();
  epoch = 0;

  constructor(readonly site: string, private readonly logFile: string) {}

  status(): AgentAppStatus {
    return { site: this.site, state: this.state, pid: this.child?.pid ?? null, exitCode: this.exitCode, since: this.since };
  }

  isRunning(): boolean {
    return this.state === 'running' || this.state === 'starting';
  }

  start(req: StartAppRequest): void {
    const [cmd, ...args] = req.command;
    if (!cmd) throw new Error('empty command');
    const log = fs.openSync(this.logFile, 'a');
    const child = spawn(cmd, args, {
      cwd: req.cwd,
      env: { ...withoutSecrets(process.env), ...req.env, DATA_DIR: req.dataDir, ...(req.mode === 'ro' ? { READ_ONLY: '1' } : {}) },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.child = child;
    this.epoch = req.epoch;
    this.exitCode = null;
    this.setState('running');
    child.on('error', () => this.setState('exited'));
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.exitCode = code ?? (signal ? 128 : null);
      this.child = null;
      this.setState(this.state === 'stopped' ? 'stopped' : 'exited');
    });
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
