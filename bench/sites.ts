/**
 * bench/sites: what the controller costs with many sites, and whether it still sees
 * a crash quickly. `understudy up` runs --sites sites (default 1000), each probed
 * every --every (default 1s); then the controller's CPU (and the other parts') is
 * read from /proc over --seconds of calm; then --trials sites are crashed, one at a
 * time, and the time from the kill to the `detectedAt` of their `failure-detected`
 * event is taken.
 *
 *   npm run bench:sites -- [--sites 1000] [--every 1s] [--seconds 20] [--trials 10]
 *
 * The apps are real HTTP servers, cheaply: one process (this file, `--apps`) answers on
 * every site's address and port. A site's app, as Understudy starts it on its host, is
 * a small bash process that asks that server to listen for it and holds the request
 * open (`bash -c 'exec 3<>/dev/tcp/…'`): when the app dies, its connection closes and
 * the server closes the site's listener and every connection on it, so the site stops
 * answering exactly as a crashed app does. Killing that bash process is the crash.
 *
 * Every site but the crashed ones runs on h1 (standby h2). A failover fences the failed
 * primary's host, so each site crashed in a trial has a host of its own (v0, v1, …,
 * standby h2): its failover powers off that host only. During a trial the crashed site
 * gets a request every 20 ms through its front, as a shop with visitors does: the
 * director's refused connections make the controller probe at once.
 *
 * Loopback only; ports 29500–29530 and 30000 + i (fronts, on 127.0.250.1) and
 * 31000 + i (apps, on the hosts' addresses), below the ephemeral range. Bounded: the
 * start waits at most 20 min, a trial 10 s. Everything started is stopped at the end.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify as stringifyYaml } from 'yaml';
import { interruptThenKill, killProcessesOf } from '../test/support/procs.ts';

const self = new URL(import.meta.url).pathname;
const ROOT = path.resolve(path.dirname(self), '..');
const BIN = path.join(ROOT, 'bin/understudy.js');
const CONTROL_PORT = 29520;

if (process.argv[2] === '--apps') runApps();
else await main();

/** The one process that answers for every site's app (see the header). */
function runApps(): void {
  const body = '{"ok":true}';
  const control = net.createServer((conn) => {
    let line = '';
    let server: http.Server | null = null;
    const sockets = new Set<net.Socket>();
    conn.setEncoding('utf8');
    conn.on('data', (d: string) => {
      if (server !== null) return;
      line += d;
      const nl = line.indexOf('\n');
      if (nl < 0) return;
      const [address, port] = line.slice(0, nl).trim().split(/\s+/);
      server = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      });
      server.keepAliveTimeout = 30_000;
      server.on('connection', (s: net.Socket) => {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
      });
      server.on('error', (e) => {
        console.error(`apps: ${address}:${port}: ${e.message}`);
        conn.destroy();
      });
      server.listen(Number(port), address);
    });
    // The app is gone: its site stops answering, as a crashed app's does.
    const gone = () => {
      server?.close();
      for (const s of sockets) s.destroy();
    };
    conn.on('close', gone);
    conn.on('error', gone);
  });
  control.listen(CONTROL_PORT, '127.0.0.1', () => process.send!('ready'));
}

interface Ev {
  id: number;
  kind: string;
  message: string;
  site: string | null;
  data: Record<string, unknown>;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sites: { type: 'string', default: '1000' },
      every: { type: 'string', default: '1s' },
      seconds: { type: 'string', default: '20' },
      trials: { type: 'string', default: '10' },
    },
  });
  const sites = Number(values.sites);
  const trials = Number(values.trials);
  const seconds = Number(values.seconds);
  if (!(sites >= trials + 1 && sites <= 1000 && trials >= 1 && seconds >= 1)) {
    console.error('usage: bench/sites.ts [--sites N ≤ 1000] [--every 1s] [--seconds S] [--trials T < N]');
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-bench-sites-'));
  const children: ChildProcess[] = [];
  let up: ChildProcess | null = null;
  try {
    const apps = fork(self, ['--apps'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(apps);
    await new Promise<void>((resolve, reject) => {
      apps.once('message', () => resolve());
      apps.once('exit', (code) => reject(new Error(`the apps process exited (${code}): is port ${CONTROL_PORT} taken?`)));
    });
    const file = writeConfig(dir, sites, trials, values.every);
    let out = '';
    const t0 = Date.now();
    up = spawn(process.execPath, [BIN, 'up', '-c', file], {
      cwd: ROOT,
      env: { ...process.env, UNDERSTUDY_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    up.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    up.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    let shown = 0;
    for (;;) {
      const started = out.split('site-started').length - 1;
      if (started >= sites) break;
      if (up.exitCode !== null || Date.now() - t0 > 20 * 60_000) throw new Error(`understudy up did not start ${sites} sites:\n${out.slice(-3000)}`);
      if (started >= shown + 100) {
        shown = started - (started % 100);
        // progress, every 100 sites
        console.error(`  ${shown} of ${sites} sites started (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
      }
      await sleep(500);
    }
    const startS = (Date.now() - t0) / 1000;
    console.error(`  all ${sites} sites started in ${startS.toFixed(0)} s; calm for ${seconds} s`);
    await sleep(5000);
    const parts = partsOf(file);
    const before = cpuOf(parts);
    const falseBefore = await events(0);
    await sleep(seconds * 1000);
    const calm = cpuShare(before, cpuOf(parts), seconds);
    const afterCalm = await events(0);
    const lastId = afterCalm.at(-1)?.id ?? 0;
    const calmFailures = afterCalm.filter((e) => e.kind === 'failure-detected').length;
    for (const e of afterCalm.filter((x) => x.kind === 'failure-detected').slice(0, 3)) console.error(`  before the trials: ${e.site}: ${e.message}`);

    const detections: number[] = [];
    const trialCpu0 = cpuOf(parts);
    const trialT0 = Date.now();
    let missed = 0;
    for (let k = 0; k < trials; k++) {
      const ms = await crashTrial(k, lastId);
      if (ms === null) missed++;
      else detections.push(ms);
    }
    const trialCpu = cpuShare(trialCpu0, cpuOf(parts), (Date.now() - trialT0) / 1000);
    const all = await events(lastId);
    const others = all.filter((e) => e.kind === 'failure-detected' && !String(e.site).startsWith('victim'));

    const sorted = [...detections].sort((a, b) => a - b);
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
    console.log(`${sites} sites, probes every ${values.every}, node ${process.version}, ${os.cpus().length} cores; started in ${startS.toFixed(0)} s`);
    console.log('| part | CPU, calm (% of a core) | CPU, during the crash trials |');
    console.log('|---|---:|---:|');
    for (const name of Object.keys(parts)) console.log(`| ${name} | ${calm[name]!.toFixed(1)} | ${trialCpu[name]!.toFixed(1)} |`);
    console.log(
      `crash → failure-detected, ${trials} trials: p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms, max ${sorted.at(-1)} ms${missed ? `; ${missed} not detected within 10 s` : ''}`,
    );
    console.log(
      `failures detected while calm: ${calmFailures} (before the calm window: ${falseBefore.filter((e) => e.kind === 'failure-detected').length}); at sites not crashed, during the trials: ${others.length}`,
    );
    console.log(`targets: controller ≤ 25 % of a core, detection p95 ≤ 300 ms`);
  } finally {
    if (up) await interruptThenKill(up);
    for (const c of children) c.kill('SIGKILL');
    killProcessesOf(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }

  /** Crashes victim k's app (SIGKILL of its bash process) under a trickle of requests; resolves with kill → detectedAt. */
  async function crashTrial(k: number, after: number): Promise<number | null> {
    const site = `victim${k}`;
    const pid = appPid(`v${k}`, 31000 + k);
    let stop = false;
    const trickle = (async () => {
      while (!stop) {
        await fetch(`http://127.0.250.1:${30000 + k}/`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        await sleep(20);
      }
    })();
    try {
      await sleep(500);
      const killAt = Date.now();
      process.kill(pid, 'SIGKILL');
      const deadline = killAt + 10_000;
      while (Date.now() < deadline) {
        const e = (await events(after)).find((x) => x.kind === 'failure-detected' && x.site === site);
        if (e) return Number(e.data.detectedAt) - killAt;
        await sleep(50);
      }
      console.error(`  ${site}: no failure-detected within 10 s of the crash`);
      return null;
    } finally {
      stop = true;
      await trickle;
    }
  }
}

function writeConfig(dir: string, n: number, victims: number, every: string): string {
  fs.mkdirSync(path.join(dir, 'seed'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'seed', 'README'), 'bench/sites: an app with no data of its own\n');
  const app = (i: number) => ({
    // The app: asks the apps process to answer on its host's address and port, then waits; its death is the site's crash.
    command: ['bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${CONTROL_PORT}; echo "$0 $1" >&3; read -r -u 3 _`, '{{host.address}}', '{{site.app.port}}'],
    port: 31000 + i,
    seed: path.join(dir, 'seed'),
  });
  const site = (i: number, primary: string) => ({
    front: `127.0.250.1:${30000 + i}`,
    app: app(i),
    primary,
    standby: ['h2'],
    volume: { replication: 'async' },
    health: { probe: { path: '/healthz', every, timeout: '500ms', fall: 2, rise: 1 } },
  });
  const sites: Record<string, unknown> = {};
  const hosts: Record<string, unknown> = {
    h1: { address: '127.0.251.1', storage: 'array-a', power: 'local', boot: true },
    h2: { address: '127.0.252.1', storage: 'array-b', power: 'local', boot: true },
  };
  for (let k = 0; k < victims; k++) {
    hosts[`v${k}`] = { address: `127.0.${240 + Math.floor(k / 200)}.${(k % 200) + 1}`, storage: 'array-a', power: 'local', boot: true };
    sites[`victim${k}`] = site(k, `v${k}`);
  }
  for (let i = victims; i < n; i++) sites[`s${i}`] = site(i, 'h1');
  const doc = {
    controller: { listen: '127.0.0.1:29500', state: path.join(dir, 'state') },
    director: { listen: '127.0.0.1:29501' },
    storage: {
      'array-a': { path: path.join(dir, 'array-a'), listen: '127.0.0.1:29510' },
      'array-b': { path: path.join(dir, 'array-b'), listen: '127.0.0.1:29511' },
    },
    hosts,
    sites,
  };
  const file = path.join(dir, 'understudy.yaml');
  fs.writeFileSync(file, `# generated by bench/sites.ts\n${stringifyYaml(doc)}`);
  return file;
}

/** The pids of the controller, the director and the storage processors of this config. */
function partsOf(file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!argv.includes(file) || !argv.some((a) => a.endsWith('understudy.js'))) continue;
    const cmd = argv[argv.findIndex((a) => a.endsWith('understudy.js')) + 1];
    if (cmd === 'controller' || cmd === 'director') out[cmd] = pid;
    else if (cmd === 'storage') out[`storage ${argv[argv.indexOf('--name') + 1]}`] = pid;
  }
  if (out.controller === undefined) throw new Error('the controller process was not found');
  return out;
}

/** Clock ticks (user + system) each part used so far. */
function cpuOf(parts: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(parts)) {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    out[name] = Number(fields[11]) + Number(fields[12]);
  }
  return out;
}

/** Percent of one core each part used between two readings `seconds` apart (USER_HZ = 100). */
function cpuShare(a: Record<string, number>, b: Record<string, number>, seconds: number): Record<string, number> {
  return Object.fromEntries(Object.keys(a).map((k) => [k, (b[k]! - a[k]!) / seconds]));
}

/** The pid of the bash process that is a site's app on `host` (its argv ends with the host's address and the port). */
function appPid(host: string, port: number): number {
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv[0]?.endsWith('bash') && argv.at(-1) === String(port) && argv.some((a) => a.includes(`/dev/tcp/127.0.0.1/${CONTROL_PORT}`))) return pid;
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`the app of ${host} on port ${port} is not running`);
}

async function events(after: number): Promise<Ev[]> {
  const r = await fetch(`http://127.0.0.1:29500/v1/events?after=${after}&limit=5000`, { signal: AbortSignal.timeout(30_000) });
  return ((await r.json()) as { events: Ev[] }).events;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
