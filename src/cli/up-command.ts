import { spawn, type ChildProcess } from 'node:child_process';
import { background } from '../shared/background.ts';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Endpoint, UnderstudyConfig } from '../config/types.ts';
import { endpointToString, endpointUrl } from '../config/types.ts';
import { isGroupAlive, killGroup } from '../power/process-group.ts';
import { callJson as callJsonRaw, type JsonCallOptions } from '../shared/http-client.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { StateStore } from '../state/state-store.ts';
import { checkVolumeDatabases } from '../storage/volume-check.ts';
import type { StatusView } from '../controller/status-view.ts';
import type { EventRecord } from '../state/state-store.ts';
import { PACKAGE_ROOT } from './config-path.ts';
import { formatEvent } from './format.ts';
import { checkSeeds, controllerStartFailure, startFailureLines, startFailureSummary } from './start-failure.ts';

const BIN = path.join(PACKAGE_ROOT, 'bin/understudy.js');

/** `up`'s own calls to the parts it started carry the controller's token, if one is set. */
function callJson<T>(url: string, opts: JsonCallOptions = {}): Promise<T> {
  const token = process.env.UNDERSTUDY_TOKEN;
  return callJsonRaw<T>(url, { ...opts, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...opts.headers } });
}
const RESTART_DELAY_MS = 500;

interface Part {
  name: string;
  args: string[];
  url: string;
  child: ChildProcess | null;
}

/**
 * `understudy up`: checks everything it can before it starts anything (config,
 * volumes, ports), then starts one storage processor per storage system, the
 * director and the controller as separate processes (so that any of them can be
 * killed like a real fault), waits until every site serves, and stays in the
 * foreground printing the event log. A part that dies is restarted, as a service
 * manager would. Ctrl-C stops every part and powers every host off: nothing is
 * left running. If the start fails, whatever was started is stopped again.
 */
export interface UpOptions {
  /** Run the controller inside this storage system's processor (`storage --with-controller`). */
  controllerOn?: string;
  out?: (line: string) => void;
}

export async function runUp(config: UnderstudyConfig, opts: UpOptions = {}): Promise<number> {
  const out = opts.out ?? ((l: string) => console.log(l));
  const runStartedAt = Date.now();
  if (opts.controllerOn && !config.storage[opts.controllerOn]) {
    throw new UnderstudyError('US_BAD_REQUEST', `--controller-on ${opts.controllerOn}: no such storage system (the config has ${Object.keys(config.storage).join(', ')})`);
  }
  await preflight(config);
  const logDir = path.join(config.controller.stateDir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  const parts: Part[] = [
    ...Object.values(config.storage).filter((s) => s.name !== opts.controllerOn).map((s) => ({ name: `storage ${s.name}`, args: ['storage', '--name', s.name, '-c', config.file], url: endpointUrl(s.listen), child: null })),
    { name: 'director', args: ['director', '-c', config.file], url: endpointUrl(config.director.listen), child: null },
  ];
  // The controller is its own process, or lives in one storage processor (started last: it needs the others).
  const controller: Part = opts.controllerOn
    ? { name: `storage ${opts.controllerOn} with controller`, args: ['storage', '--name', opts.controllerOn, '--with-controller', '-c', config.file], url: endpointUrl(config.controller.listen), child: null }
    : { name: 'controller', args: ['controller', '-c', config.file], url: endpointUrl(config.controller.listen), child: null };
  let stopping = false;
  let startupDone = false;
  let startupFailed: ((e: Error) => void) | null = null;

  const spawnPart = (p: Part): void => {
    const log = fs.openSync(path.join(logDir, `${p.name.replace(/\s+/g, '-')}.log`), 'a');
    const child = spawn(process.execPath, [BIN, ...p.args], { cwd: config.baseDir, stdio: ['ignore', log, log], env: process.env });
    fs.closeSync(log);
    p.child = child;
    child.on('exit', (code, signal) => {
      if (p.child !== child) return;
      p.child = null;
      if (stopping) return;
      if (!startupDone) {
        // The controller records why it could not start (start-failure.ts): that cause, with its code.
        startupFailed?.((p === controller ? controllerStartFailure(config, runStartedAt) : null)
          ?? new UnderstudyError('US_INTERNAL', `${p.name} exited during start (${signal ?? `code ${code}`}); see ${logDir}/${p.name.replace(/\s+/g, '-')}.log`));
        return;
      }
      out(`! ${p.name} exited (${signal ?? `code ${code}`}); restarting in ${RESTART_DELAY_MS} ms`);
      setTimeout(() => { if (!stopping) spawnPart(p); }, RESTART_DELAY_MS);
    });
  };

  const stopAll = async (): Promise<void> => {
    stopping = true;
    const all = [controller, ...parts];
    for (const p of all) p.child?.kill('SIGTERM');
    await Promise.all(all.map((p) => waitExit(p.child, 5000)));
    powerOffAllHosts(config);
  };

  const failed = new Promise<never>((_, reject) => { startupFailed = reject; });
  // The waits a failed start leaves behind end with it (else they keep `up` alive until their timeouts).
  const waits = new AbortController();
  try {
    out(`understudy: starting ${Object.keys(config.sites).length} site(s) from ${config.file}`);
    for (const p of parts) spawnPart(p);
    await Promise.race([failed, Promise.all(parts.map((p) => waitHealthz(p.url, 30_000, p.name, waits.signal)))]);
    for (const p of parts) out(`  ✓ ${p.name} on ${p.url.replace('http://', '')}`);
    spawnPart(controller);
    await Promise.race([failed, waitHealthz(controller.url, 30_000, 'controller', waits.signal)]);
    out(`  ✓ ${controller.name} on ${controller.url.replace('http://', '')}`);
    await Promise.race([failed, waitSitesServing(config, controller.url, 60_000, waits.signal)]);
    startupDone = true;
  } catch (e) {
    waits.abort();
    for (const line of startFailureLines(e)) out(line);
    out('understudy: stopping what was started');
    await stopAll();
    throw startFailureSummary(e);
  }
  for (const s of Object.values(config.sites)) out(`  ✓ site ${s.name} serving at http://${endpointToString(s.front)}`);
  out('understudy is up. Ctrl-C stops everything. Events:');

  // Only this run's events: the log's history is `understudy events`.
  let lastEvent = 0;
  await callJson<{ events: EventRecord[] }>(`${controller.url}/v1/events?after=0&limit=5000`, { timeoutMs: 2000 }).then((r) => {
    for (const e of r.events) { if (e.at >= runStartedAt) out(formatEvent(e)); lastEvent = e.id; }
  }, () => undefined);
  const follow = setInterval(() => {
    callJson<{ events: EventRecord[] }>(`${controller.url}/v1/events?after=${lastEvent}`, { timeoutMs: 1000 }).then((r) => {
      for (const e of r.events) { if (e.at >= runStartedAt) out(formatEvent(e)); lastEvent = e.id; }
    }, () => undefined);
  }, 300);

  return new Promise<number>((resolve) => {
    const onSignal = () => {
      clearInterval(follow);
      out('understudy: stopping (powering every host off)…');
      background(stopAll().then(() => { out('understudy: stopped'); resolve(0); }));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

/** Everything checked before anything starts, so that a bad start leaves nothing half-started. */
async function preflight(config: UnderstudyConfig): Promise<void> {
  checkSeeds(config);
  const volumeProblems: string[] = [];
  for (const s of Object.values(config.storage)) {
    const volumes = path.join(s.path, 'volumes');
    if (!fs.existsSync(volumes)) continue;
    for (const site of fs.readdirSync(volumes)) volumeProblems.push(...checkVolumeDatabases(path.join(volumes, site)));
  }
  if (volumeProblems.length > 0) throw new UnderstudyError('US_VOLUME_NOT_DATABASE', volumeProblems.join('\n'), { problems: volumeProblems });
  const problems: string[] = [];
  const endpoints: [string, Endpoint][] = [
    ['controller.listen', config.controller.listen],
    ['director.listen', config.director.listen],
    ...Object.values(config.storage).map((s): [string, Endpoint] => [`storage.${s.name}.listen`, s.listen]),
    ...Object.values(config.sites).map((s): [string, Endpoint] => [`sites.${s.name}.front`, s.front]),
  ];
  for (const [where, e] of endpoints) {
    if (!(await portFree(e))) problems.push(`${config.file}: ${where}: ${endpointToString(e)} is already in use: stop what listens there (another understudy up?) or choose another port`);
  }
  if (problems.length > 0) throw new UnderstudyError('US_PORT_IN_USE', problems.join('\n'), { problems });
}

function portFree(e: Endpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(e.port, e.host, () => s.close(() => resolve(true)));
  });
}

async function waitHealthz(url: string, timeoutMs: number, name: string, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !signal.aborted) {
    try {
      await callJson(`${url}/healthz`, { timeoutMs: 500 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new UnderstudyError('US_TIMEOUT', `${name} did not answer on ${url} within ${timeoutMs} ms`);
}

async function waitSitesServing(config: UnderstudyConfig, url: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline && !signal.aborted) {
    try {
      const st = await callJson<StatusView>(`${url}/v1/status`, { timeoutMs: 1000 });
      const waiting = Object.keys(config.sites).filter((s) => !['serving', 'degraded'].includes(st.sites.find((x) => x.name === s)?.state ?? ''));
      if (waiting.length === 0) return;
      last = waiting.join(', ');
    } catch {
      // not answering yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new UnderstudyError('US_TIMEOUT', `sites not serving after ${timeoutMs} ms: ${last}; see ${config.controller.stateDir}/logs/`);
}

function waitExit(child: ChildProcess | null, timeoutMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); resolve(); }, timeoutMs);
    child.once('exit', () => { clearTimeout(t); resolve(); });
  });
}

/**
 * A clean stop: every host the relays know of is cut and confirmed gone, and the
 * relays forget them (the next `up` boots the `boot` hosts again); serving sites
 * and sites that were down are marked `starting`, so that the next `up` starts them
 * on the primary they had (the copy that is current: promoted, or never replaced).
 */
export function powerOffAllHosts(config: UnderstudyConfig): void {
  if (!fs.existsSync(path.join(config.controller.stateDir, 'understudy.db'))) return;
  const store = new StateStore(config.controller.stateDir);
  try {
    for (const r of store.listRelays()) {
      if (r.pgid !== null) {
        killGroup(r.pgid);
        const deadline = Date.now() + 3000;
        while (isGroupAlive(r.pgid) && Date.now() < deadline) { /* wait for the kernel to finish the kill */ }
      }
      store.forgetRelay(r.host);
    }
    for (const s of store.listSites()) if (s.state === 'serving' || s.state === 'degraded' || s.state === 'down') store.setSiteState(s.site, 'starting');
  } finally {
    store.close();
  }
}
