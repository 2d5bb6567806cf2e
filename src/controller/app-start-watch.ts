import type { HostConfig, ProbeConfig, SiteConfig } from '../config/types.ts';
import type { AppProbe } from '../monitor/app-probe.ts';
import type { ProbeResult } from '../monitor/http-probe.ts';
import type { AgentAppStatus, AgentStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { siteProbe } from './site-facts.ts';
import { sleep } from './timing.ts';

/** How often the agent is asked whether the app still runs while the probe fails. */
const AGENT_CHECK_MS = 200;

export interface AppStartWatch {
  site: string;
  host: string;
  /** The site's probe of the app on `host` (site-facts.ts siteProbe). */
  probe: AppProbe;
  probeConfig: Pick<ProbeConfig, 'type' | 'path' | 'expect' | 'timeoutMs'>;
  /** The host agent's status (clients.agentStatus). */
  agentStatus: () => Promise<AgentStatus>;
  /** `app.startTimeout`. */
  timeoutMs: number;
  /** The command the app was started with (for the report). */
  command: string[];
  /** Pause between probes. @default 10 */
  everyMs?: number;
}

/**
 * Waits until a just-started app answers its probe healthily, and otherwise says
 * why it does not, as soon as that is known, with a stable code:
 *
 * - `US_APP_EXITED` at once when the agent reports the app exited (its exit code
 *   and last lines of output), or `US_APP_SPAWN_FAILED` when its program could not
 *   be started at all;
 * - `US_APP_NOT_HEALTHY` after `timeoutMs` without a healthy answer: the probe's
 *   target, its answers (oldest first, repeated ones counted), what to change, and
 *   the app's last output.
 *
 * The message's first line is the summary; the lines after it (indented) are the
 * evidence, for the terminal (`up`) and the event log alike.
 */
export async function waitAppAnswers(w: AppStartWatch): Promise<void> {
  const started = Date.now();
  const answers = new AnswerLog();
  let nextAgentCheck = started + AGENT_CHECK_MS;
  let lastApp: AgentAppStatus | undefined;
  for (;;) {
    const r = await w.probe.run();
    if (r.ok) return;
    answers.add(r);
    const now = Date.now();
    if (now >= nextAgentCheck || now - started >= w.timeoutMs) {
      nextAgentCheck = now + AGENT_CHECK_MS;
      const st = await w.agentStatus().catch(() => null);
      lastApp = st?.sites.find((s) => s.site === w.site) ?? lastApp;
      if (lastApp?.state === 'exited') throw exited(w, lastApp, answers);
    }
    if (Date.now() - started >= w.timeoutMs) throw notHealthy(w, lastApp, answers);
    await sleep(w.everyMs ?? 10);
  }
}

/**
 * `waitAppAnswers` for `site`'s app just started on `host` with `command` (the start
 * request's): the site's probe, `app.startTimeout`, the host agent's status.
 */
export async function waitSiteStarted(
  agentStatus: (host: string, timeoutMs?: number) => Promise<AgentStatus>,
  host: HostConfig,
  site: SiteConfig,
  command: string[],
  everyMs?: number,
): Promise<void> {
  const probe = siteProbe(host, site);
  try {
    await waitAppAnswers({
      site: site.name,
      host: host.name,
      probe,
      probeConfig: site.health.probe,
      command,
      everyMs,
      agentStatus: () => agentStatus(host.name, 500),
      timeoutMs: site.app.startTimeoutMs ?? 30_000,
    });
  } finally {
    await probe.close();
  }
}

function exited(w: AppStartWatch, app: AgentAppStatus, answers: AnswerLog): UnderstudyError {
  const lines = [`command: ${w.command.join(' ')}`];
  if (app.error !== undefined) {
    lines.push(
      `could not start the program: ${app.error} (is ${w.command[0]} installed, and is the path right? Relative paths resolve against the config file's directory)`,
    );
    return new UnderstudyError(
      'US_APP_SPAWN_FAILED',
      [`${w.site} on ${w.host}: the app's program could not be started`, ...indent(lines)].join('\n'),
      details(w, app, answers),
    );
  }
  const how = app.signal ? `was killed by ${app.signal}` : `exited with code ${app.exitCode ?? '?'}`;
  const output = app.output ?? [];
  const portTaken = output.some((l) => /EADDRINUSE|address already in use/i.test(l));
  if (answers.size > 0) lines.push(`probe ${w.probe.target} answered: ${answers.summary()}`);
  if (portTaken)
    lines.push(
      `its output says its address is in use: another process holds the port, or the app listens on all addresses (0.0.0.0) where another instance runs on this machine; bind it to {{host.address}}:{{site.app.port}}`,
    );
  lines.push(...outputLines(app));
  return new UnderstudyError(
    portTaken ? 'US_APP_PORT_IN_USE' : 'US_APP_EXITED',
    [`${w.site} on ${w.host}: the app ${how} before it answered its probe`, ...indent(lines)].join('\n'),
    details(w, app, answers),
  );
}

function notHealthy(w: AppStartWatch, app: AgentAppStatus | undefined, answers: AnswerLog): UnderstudyError {
  const running = app?.state === 'running' ? ` (the app runs, pid ${app.pid ?? '?'})` : '';
  const lines = [`command: ${w.command.join(' ')}`, `probe ${w.probe.target} answered: ${answers.summary()}`, `what to do: ${hint(w, answers.last)}`];
  return new UnderstudyError(
    'US_APP_NOT_HEALTHY',
    [`${w.site} on ${w.host}: no healthy answer from ${w.probe.target} within ${w.timeoutMs} ms (app.startTimeout)${running}`, ...indent(lines)].join('\n'),
    details(w, app, answers),
  );
}

/** What to change, from the last answer. */
function hint(w: AppStartWatch, last: ProbeResult | undefined): string {
  const p = w.probeConfig;
  const error = last?.error ?? 'no answer';
  if (error === 'refused') {
    return `nothing listens there: the app must listen on its host's address and app.port; give it them through templates in app.command or app.env ("{{host.address}}", "{{site.app.port}}") or read UNDERSTUDY_ADDRESS and UNDERSTUDY_PORT`;
  }
  if (error === 'timeout')
    return `the app accepts connections but does not answer within health.probe.timeout (${p.timeoutMs} ms): raise it if the app is slow to answer, or check the app's output`;
  if (error.startsWith('status ')) {
    const wanted = p.expect?.status ? `one of health.probe.expect.status [${p.expect.status.join(', ')}]` : 'any 2xx or 3xx';
    return `the app answers ${error} on ${p.path}, the probe wants ${wanted}: set health.probe.path to a path the app answers (or health.probe.type: tcp for an app without one)${p.expect?.status ? ', or change health.probe.expect.status' : ''}`;
  }
  if (error.startsWith('body'))
    return `the answer's body does not match health.probe.expect.body (/${p.expect?.body ?? ''}/): fix the pattern, or leave it out`;
  return `the connection to the app broke (${error}): check the app's output`;
}

function outputLines(app: AgentAppStatus): string[] {
  const output = app.output ?? [];
  if (output.length === 0) return [`it wrote nothing${app.logFile ? ` (${app.logFile})` : ''}`];
  return [`last output${app.logFile ? ` (${app.logFile})` : ''}:`, ...output.map((l) => `  ${l}`)];
}

function details(w: AppStartWatch, app: AgentAppStatus | undefined, answers: AnswerLog): Record<string, unknown> {
  return {
    site: w.site,
    host: w.host,
    probe: w.probe.target,
    command: w.command,
    answers: answers.groups(),
    ...(app
      ? {
          app: {
            state: app.state,
            pid: app.pid,
            exitCode: app.exitCode,
            signal: app.signal ?? null,
            error: app.error,
            output: app.output,
            logFile: app.logFile,
          },
        }
      : {}),
  };
}

function indent(lines: string[]): string[] {
  return lines.map((l) => `  ${l}`);
}

/** The probe's failed answers, oldest first, consecutive equal ones counted (bounded: the first and the newest groups). */
class AnswerLog {
  private readonly runs: { what: string; count: number; answer?: string }[] = [];
  private dropped = 0;
  last: ProbeResult | undefined;

  get size(): number {
    return this.runs.length;
  }

  add(r: ProbeResult): void {
    this.last = r;
    const what = r.error ?? 'failed';
    const tail = this.runs[this.runs.length - 1];
    if (tail && tail.what === what) {
      tail.count++;
      if (r.answer !== undefined) tail.answer = r.answer;
      return;
    }
    this.runs.push({ what, count: 1, ...(r.answer !== undefined ? { answer: r.answer } : {}) });
    if (this.runs.length > 6) {
      this.runs.splice(1, 1);
      this.dropped++;
    }
  }

  groups(): { what: string; count: number; answer?: string }[] {
    return this.runs.map((r) => ({ ...r }));
  }

  summary(): string {
    if (this.runs.length === 0) return 'nothing yet';
    const parts = this.runs.map((r) => `${r.what}${r.count > 1 ? ` ×${r.count}` : ''}${r.answer ? ` (${JSON.stringify(r.answer.slice(0, 120))})` : ''}`);
    if (this.dropped > 0) parts.splice(1, 0, `…${this.dropped} more…`);
    return parts.join(', then ');
  }
}
