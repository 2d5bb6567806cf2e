import fs from 'node:fs';
import { background } from '../shared/background.ts';
import net from 'node:net';
import path from 'node:path';
import type { Endpoint, UnderstudyConfig } from '../config/types.ts';
import { endpointToString, endpointUrl } from '../config/types.ts';
import { ephemeralPortRange, inEphemeralRange, listenEndpoints } from './listen-ports.ts';
import { callJson as callJsonRaw, type JsonCallOptions } from '../shared/http-client.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { checkVolumeDatabases } from '../storage/volume-check.ts';
import type { StatusView } from '../controller/status-view.ts';
import type { EventRecord } from '../state/state-store.ts';
import { PACKAGE_ROOT } from './config-path.ts';
import { formatEvent } from './format.ts';
import { checkSeeds, controllerStartFailure, startFailureLines, startFailureSummary } from './start-failure.ts';
import { PartSupervisor, partLogFile, stopLeftoverParts, type PartSpec } from './part-supervisor.ts';
import { handoffEnv } from '../config/handoff.ts';
import { powerOffAllHosts, reclaimHosts } from './up-hosts.ts';

const BIN = path.join(PACKAGE_ROOT, 'bin/understudy.js');

/** `up`'s own calls to the parts it started carry the controller's token, if one is set. */
function callJson<T>(url: string, opts: JsonCallOptions = {}): Promise<T> {
  const token = process.env.UNDERSTUDY_TOKEN;
  return callJsonRaw<T>(url, { ...opts, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...opts.headers } });
}
type Part = PartSpec;
const RESTART_DELAY_MS = 500;

/**
 * How `up` stops (the bound is stated in docs/operations.md): the controller gets
 * CONTROLLER_GRACE_MS after SIGTERM, the hosts' cut is confirmed within the relay's
 * CONFIRM_TIMEOUT_MS (3 s), the director and the storage processors get
 * PARTS_GRACE_MS; whatever still runs STOP_WATCHDOG_MS after the first signal is
 * killed at once (the hard stop, at most ~4 s more), so that `up` has ended
 * STOP_BOUND_MS after the first signal whatever happens.
 */
const CONTROLLER_GRACE_MS = 2000;
const PARTS_GRACE_MS = 2500;
const STOP_WATCHDOG_MS = 6000;
export const STOP_BOUND_MS = 10_000;
/** npm forwards the terminal's SIGINT to `up`, which thus gets two at once: a repeat this soon is the same request. */
const SAME_SIGNAL_MS = 1000;
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * `understudy up`: checks everything it can before it starts anything (config,
 * volumes, ports), then starts one storage processor per storage system, the
 * director and the controller as separate processes (so that any of them can be
 * killed like a real fault), waits until every site serves, and stays in the
 * foreground printing the event log. A part that dies is restarted, as a service
 * manager would. If the start fails, whatever was started is stopped again.
 *
 * `up` owns its parts: each runs in a process group of its own, so that Ctrl-C
 * (SIGINT to the terminal's foreground group), a hangup or `kill` reaches `up`
 * alone, which stops them in order: the controller first (it takes no action
 * while the rest stops), then every host powered off and confirmed, then the
 * director and the storage processors. A second signal (after SAME_SIGNAL_MS) kills
 * everything at once. An `up` that was killed leaves its parts and hosts running:
 * the next `up` of the same config stops those parts and takes the hosts back
 * (or powers them off), so that nothing serves unseen.
 */
export interface UpOptions {
  /** Run the controller inside this storage system's processor (`storage --with-controller`). */
  controllerOn?: string;
  out?: (line: string) => void;
}

export async function runUp(config: UnderstudyConfig, opts: UpOptions = {}): Promise<number> {
  // After a hangup (terminal closed) or a closed pipe, printing fails: `up` must still stop everything.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  const print = opts.out ?? ((l: string) => console.log(l));
  const out = (line: string): void => {
    try {
      print(line);
    } catch {
      /* nowhere to print */
    }
  };
  const runStartedAt = Date.now();
  if (opts.controllerOn && !config.storage[opts.controllerOn]) {
    throw new UnderstudyError(
      'US_NOT_FOUND',
      `--controller-on ${opts.controllerOn}: no such storage system (the config has ${Object.keys(config.storage).join(', ')})`,
    );
  }
  const logDir = path.join(config.controller.stateDir, 'logs');
  const parts: Part[] = [
    ...Object.values(config.storage)
      .filter((s) => s.name !== opts.controllerOn)
      .map((s) => ({ name: `storage ${s.name}`, args: ['storage', '--name', s.name, '-c', config.file], url: endpointUrl(s.listen) })),
    { name: 'director', args: ['director', '-c', config.file], url: endpointUrl(config.director.listen) },
  ];
  // The controller is its own process, or lives in one storage processor (started last: it needs the others).
  // Its young generation is twice Node's default: a probe and a stats poll per site leave
  // many short-lived objects, and fewer scavenges cost less (bench/sites, 1000 sites: about
  // 2 points of a core less; see docs/operations.md).
  const controllerNode = ['--max-semi-space-size=32'];
  const controller: Part = opts.controllerOn
    ? {
        name: `storage ${opts.controllerOn} with controller`,
        args: ['storage', '--name', opts.controllerOn, '--with-controller', '-c', config.file],
        url: endpointUrl(config.controller.listen),
        nodeArgs: controllerNode,
      }
    : { name: 'controller', args: ['controller', '-c', config.file], url: endpointUrl(config.controller.listen), nodeArgs: controllerNode };
  let startupDone = false;
  let startupFailed: ((e: Error) => void) | null = null;
  const supervisor = new PartSupervisor({
    bin: BIN,
    cwd: config.baseDir,
    logDir,
    env: { ...process.env, ...handoffEnv(config) },
    onExit: (p, how) => {
      if (!startupDone) {
        // The controller records why it could not start (start-failure.ts): that cause, with its code.
        startupFailed?.(
          (p === controller ? controllerStartFailure(config, runStartedAt) : null) ??
            new UnderstudyError('US_INTERNAL', `${p.name} exited during start (${how}); see ${partLogFile(logDir, p.name)}`),
        );
        return;
      }
      out(`! ${p.name} exited (${how}); restarting in ${RESTART_DELAY_MS} ms`);
      setTimeout(() => supervisor.start(p), RESTART_DELAY_MS);
    },
  });

  // ---- stopping: ordered on the first signal, at once on a later one or past the watchdog
  let follow: NodeJS.Timeout | undefined;
  let ordered: Promise<void> | null = null;
  let hard: Promise<void> | null = null;
  let firstSignalAt = 0;
  let resolveStopped: (code: number) => void = () => undefined;
  const stopped = new Promise<number>((r) => {
    resolveStopped = r;
  });
  const hostsOff = async (): Promise<void> => {
    const r = await powerOffAllHosts(config);
    if (r.off.length > 0) out(`  ✓ host${r.off.length > 1 ? 's' : ''} ${r.off.join(', ')} powered off`);
    for (const u of r.unconfirmed) out(`  ! ${u.host}: ${u.message}`);
  };
  const stopOrdered = (): Promise<void> => {
    ordered ??= (async () => {
      supervisor.beginStop();
      clearInterval(follow);
      for (const line of await supervisor.stop([controller.name], CONTROLLER_GRACE_MS)) out(`  ✓ ${line}`);
      await hostsOff();
      for (const line of await supervisor.stop(
        parts.map((p) => p.name),
        PARTS_GRACE_MS,
      ))
        out(`  ✓ ${line}`);
    })();
    return ordered;
  };
  const stopHard = (why: string): Promise<void> => {
    hard ??= (async () => {
      out(`understudy: ${why}: killing every part and powering every host off now`);
      clearInterval(follow);
      await supervisor.killAll();
      await hostsOff();
    })();
    return hard;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (firstSignalAt === 0) {
      firstSignalAt = Date.now();
      startAbort.abort();
      out(`understudy: stopping (${signal}): the controller, then every host (powered off), then the director and storage…`);
      const watchdog = setTimeout(() => {
        void stopHard(`still stopping after ${STOP_WATCHDOG_MS} ms`).then(
          () => resolveStopped(1),
          () => resolveStopped(1),
        );
      }, STOP_WATCHDOG_MS);
      void stopOrdered().then(
        () => {
          clearTimeout(watchdog);
          if (!hard) {
            out('understudy: stopped');
            resolveStopped(0);
          }
        },
        (e: unknown) => {
          clearTimeout(watchdog);
          void stopHard(`the stop failed (${(e as Error).message})`).then(
            () => resolveStopped(1),
            () => resolveStopped(1),
          );
        },
      );
    } else if (Date.now() - firstSignalAt >= SAME_SIGNAL_MS) {
      void stopHard(`${signal} again`).then(
        () => resolveStopped(1),
        () => resolveStopped(1),
      );
    }
  };
  const onCrash = (e: unknown): void => {
    process.stderr.write(`understudy: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    background(stopHard('internal error').finally(() => process.exit(1)));
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  // The start gives up as soon as a signal came; its waits end with it.
  const startAbort = new AbortController();
  const interrupted = new Promise<never>((_, reject) => {
    startAbort.signal.addEventListener('abort', () => reject(new UnderstudyError('US_STOPPING', 'stopped by a signal')));
  });
  interrupted.catch(() => undefined);
  const finish = async (code: number): Promise<number> => {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    return code;
  };

  const failed = new Promise<never>((_, reject) => {
    startupFailed = reject;
  });
  failed.catch(() => undefined);
  try {
    // What an earlier `up` of this config left running: its parts stopped, its hosts taken back.
    await Promise.race([interrupted, takeBack(config, out)]);
    await Promise.race([interrupted, preflight(config)]);
    fs.mkdirSync(logDir, { recursive: true });
    out(`understudy: starting ${Object.keys(config.sites).length} site(s) from ${config.file}`);
    for (const p of parts) supervisor.start(p);
    await Promise.race([interrupted, failed, Promise.all(parts.map((p) => waitHealthz(p.url, 30_000, p.name, startAbort.signal)))]);
    for (const p of parts) out(`  ✓ ${p.name} on ${p.url.replace('http://', '')}`);
    supervisor.start(controller);
    await Promise.race([interrupted, failed, waitHealthz(controller.url, 30_000, 'controller', startAbort.signal)]);
    out(`  ✓ ${controller.name} on ${controller.url.replace('http://', '')}`);
    await Promise.race([interrupted, failed, waitSitesServing(config, controller.url, 60_000, startAbort.signal)]);
    startupDone = true;
  } catch (e) {
    startAbort.abort();
    if (firstSignalAt !== 0) return finish(await stopped);
    for (const line of startFailureLines(e)) out(line);
    out('understudy: stopping what was started');
    await stopOrdered();
    await finish(1);
    throw startFailureSummary(e);
  }
  startAbort.abort();
  for (const s of Object.values(config.sites)) out(`  ✓ site ${s.name} serving at http://${endpointToString(s.front)}`);
  out('understudy is up. Ctrl-C stops everything. Events:');

  // Only this run's events: the log's history is `understudy events`.
  let lastEvent = 0;
  await callJson<{ events: EventRecord[] }>(`${controller.url}/v1/events?after=0&limit=5000`, { timeoutMs: 2000 }).then(
    (r) => {
      for (const e of r.events) {
        if (e.at >= runStartedAt) out(formatEvent(e));
        lastEvent = e.id;
      }
    },
    () => undefined,
  );
  if (firstSignalAt === 0) {
    follow = setInterval(() => {
      callJson<{ events: EventRecord[] }>(`${controller.url}/v1/events?after=${lastEvent}`, { timeoutMs: 1000 }).then(
        (r) => {
          for (const e of r.events) {
            if (e.at >= runStartedAt) out(formatEvent(e));
            lastEvent = e.id;
          }
        },
        () => undefined,
      );
    }, 300);
  }
  return finish(await stopped);
}

/**
 * Before the preflight: stops the parts an earlier `up` of this config left
 * running (their ports would be in use) and lets the relays take its hosts back.
 */
async function takeBack(config: UnderstudyConfig, out: (line: string) => void): Promise<void> {
  const leftovers = await stopLeftoverParts(config, out, PARTS_GRACE_MS);
  for (const h of await reclaimHosts(config)) {
    const what =
      h.action === 'adopted'
        ? 'taken back'
        : h.action === 'powered-off'
          ? 'powered off'
          : h.action === 'recorded-off'
            ? 'recorded off'
            : 'COULD NOT BE CONFIRMED OFF';
    out(`  ${h.action === 'unconfirmed' ? '!' : '✓'} host ${h.host}${h.pid ? ` (pid ${h.pid})` : ''} ${what}: ${h.reason}`);
  }
  if (leftovers.length > 0) out(`  ✓ ${leftovers.length} part(s) left by an earlier up stopped`);
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
  const range = ephemeralPortRange();
  for (const [where, e] of listenEndpoints(config)) {
    if (!(await portFree(e))) {
      problems.push(
        `${config.file}: ${where}: ${endpointToString(e)} is already in use: stop what listens there (another understudy up?) or choose another port${
          inEphemeralRange(e.port, range)
            ? ` (it is inside this machine's range of ports for outgoing connections, ${range[0]}–${range[1]}, where any process's connection can take it: choose one below ${range[0]})`
            : ''
        }`,
      );
    }
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

/** Polls until the part answers; gives up (quietly) once `abort` fires. */
async function waitHealthz(url: string, timeoutMs: number, name: string, abort?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !abort?.aborted) {
    try {
      await callJson(`${url}/healthz`, { timeoutMs: 500 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new UnderstudyError('US_TIMEOUT', `${name} did not answer on ${url} within ${timeoutMs} ms`);
}

/**
 * Waits until every site serves. The controller starts sites one after another, so
 * the bound is on progress, not on the whole start: it gives up once `timeoutMs`
 * pass with no more site serving (a thousand sites take longer than one).
 */
async function waitSitesServing(config: UnderstudyConfig, url: string, timeoutMs: number, abort?: AbortSignal): Promise<void> {
  let deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  let fewest = Infinity;
  while (Date.now() < deadline && !abort?.aborted) {
    try {
      const st = await callJson<StatusView>(`${url}/v1/status`, { timeoutMs: 5000 });
      const state = new Map(st.sites.map((x) => [x.name, x.state]));
      const waiting = Object.keys(config.sites).filter((s) => !['serving', 'degraded'].includes(state.get(s) ?? ''));
      if (waiting.length === 0) return;
      if (waiting.length < fewest) {
        fewest = waiting.length;
        deadline = Date.now() + timeoutMs;
      }
      last = waiting;
    } catch {
      // not answering yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const named = last.length > 20 ? `${last.slice(0, 20).join(', ')} and ${last.length - 20} more` : last.join(', ');
  throw new UnderstudyError('US_TIMEOUT', `no more sites serving for ${timeoutMs} ms; still not serving: ${named}; see ${config.controller.stateDir}/logs/`);
}
