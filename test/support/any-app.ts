import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { BIN, configYaml, killRecordedHosts, ports, slotAddress, waitUntil, type ConfigDoc } from './cluster.ts';
import { interruptThenKill } from './procs.ts';

/**
 * Test support for apps that are not the demo shop: a config as a user would write
 * it for their own app (relative paths beside the file, the address through
 * templates), and `understudy up` run on it to its end (a failed start) or until it
 * is up.
 */

export interface AnyAppSite {
  /** `app:`, e.g. `{ command: ['node', 'app.mjs'], port: 3000 }`. */
  app: ConfigDoc;
  /** `health:`; absent: the defaults. */
  health?: ConfigDoc;
  replication?: 'async' | 'sync';
}

/** The controller, director, storage and two hosts (h1 on array-a, h2 on array-b) of an operator's config on the slot, with state and storage paths beside the file. */
export function twoHostHead(slot: number): ConfigDoc {
  const p = ports(slot);
  return {
    controller: { listen: `127.0.0.1:${p.controller}`, state: 'state' },
    director: { listen: `127.0.0.1:${p.director}` },
    storage: {
      'array-a': { path: 'array-a', listen: `127.0.0.1:${p.storageA}` },
      'array-b': { path: 'array-b', listen: `127.0.0.1:${p.storageB}` },
    },
    hosts: {
      h1: { address: slotAddress(slot, 0), storage: 'array-a' },
      h2: { address: slotAddress(slot, 1), storage: 'array-b' },
    },
  };
}

/** A two-host config (h1 on array-a, h2 on array-b) for one site `app`, with relative storage and state paths. */
export function anyAppConfig(slot: number, site: AnyAppSite): string {
  const p = ports(slot);
  const doc = {
    ...twoHostHead(slot),
    sites: {
      app: {
        front: `127.0.0.1:${p.front}`,
        app: site.app,
        primary: 'h1',
        standby: ['h2'],
        volume: { replication: site.replication ?? 'async' },
        ...(site.health ? { health: site.health } : {}),
      },
    },
  };
  return configYaml(doc, "test/support/any-app.ts (an operator's config for their own app; relative paths are beside this file)");
}

/** The command of a test app that takes its address through templates: `node <script> --listen <host.address>:<site.app.port>`. */
export const LISTEN_AT_HOST = ['--listen', '{{host.address}}:{{site.app.port}}'];

export interface UpRun {
  /** Exit code, or null while it runs. */
  code: () => number | null;
  output: () => string;
  /** Resolves with the exit code once `up` has ended. */
  exited: Promise<number | null>;
  startedAt: number;
  /** SIGINT, then SIGKILL after 15 s; then every host group the relays recorded is cut. */
  stop: () => Promise<void>;
}

/** Starts `understudy up -c file` from `cwd`; `stateDir` is where the run's relays are recorded (for cleanup). */
export function runUp(file: string, cwd: string, stateDir: string): UpRun {
  const startedAt = Date.now();
  const up = spawn(process.execPath, [BIN, 'up', '-c', file], {
    cwd,
    env: { ...process.env, UNDERSTUDY_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  up.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  up.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((r) => up.once('exit', (code) => r(code)));
  return {
    code: () => up.exitCode,
    output: () => out,
    exited,
    startedAt,
    stop: async () => {
      await interruptThenKill(up);
      killRecordedHosts(stateDir);
    },
  };
}

/** Starts `up` (runUp), stopped at the test's end, and waits until it says it is up; an `up` that exited is reported with its output. */
export async function upUntilUp(t: Pick<TestContext, 'after'>, file: string, cwd: string, stateDir: string, timeoutMs: number): Promise<UpRun> {
  const run = runUp(file, cwd, stateDir);
  t.after(() => run.stop());
  await waitUntil(
    'understudy is up',
    async () => {
      if (run.code() !== null) throw new Error(`up exited ${run.code()}:\n${run.output()}`);
      return run.output().includes('understudy is up');
    },
    timeoutMs,
    100,
  );
  return run;
}

/** Nothing listens on the slot's ports any more (everything `up` started is gone). */
export async function slotPortsFree(slot: number): Promise<string[]> {
  const p = ports(slot);
  const taken: string[] = [];
  for (const port of [p.controller, p.director, p.storageA, p.storageB, p.front]) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (!free) taken.push(`127.0.0.1:${port}`);
  }
  return taken;
}

/** Writes `files` (name → text) into `dir`. */
export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
}

/**
 * A small app in its own style (not the demo shop): it takes its address on its
 * command line (`--listen HOST:PORT`), answers `GET /health` with plain text, and
 * keeps a counter file in DATA_DIR (`POST /hits` counts, `GET /hits` reads; the answer
 * names the host from UNDERSTUDY_HOST/ADDRESS/PORT). `--health-status N` makes
 * /health answer N. Anything else: 404.
 */
export const TINY_APP = `import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const [host, port] = (arg('--listen') ?? '').split(':');
const healthStatus = Number(arg('--health-status') ?? 200);
const dataDir = process.env.DATA_DIR;
const hits = path.join(dataDir, 'hits.txt');
const server = http.createServer((req, res) => {
  const text = (status, body) => { res.writeHead(status, { 'content-type': 'text/plain' }); res.end(body); };
  if (req.url === '/health') return text(healthStatus, healthStatus === 200 ? 'UP' : 'nope');
  if (req.url === '/hits') {
    let n = fs.existsSync(hits) ? Number(fs.readFileSync(hits, 'utf8')) : 0;
    if (req.method === 'POST') { n++; fs.writeFileSync(hits, String(n)); }
    return text(req.method === 'POST' ? 201 : 200, 'hits ' + n + ' on ' + process.env.UNDERSTUDY_HOST + ' ' + process.env.UNDERSTUDY_ADDRESS + ':' + process.env.UNDERSTUDY_PORT + '\\n');
  }
  text(404, 'not found');
});
server.listen(Number(port), host, () => console.log('tiny app listening on ' + host + ':' + port));
`;
