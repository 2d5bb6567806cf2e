import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import Database from 'better-sqlite3';
import { ensureBuilt } from './build.ts';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { interruptThenKill, killProcessesOf } from './procs.ts';
import { claimSlot } from './slots.ts';

/**
 * Test support: a real Understudy (`understudy up`) on its own ports, loopback
 * addresses and temporary directories, so that tests never collide with the demo
 * or with each other. Everything started is stopped by `stop()`, which also cuts
 * every host process group the relays recorded, even when `up` itself died, and
 * then kills any process left that mentions the cluster's directory (a part of an
 * `up` the test killed).
 */

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The installed entry point; it runs the compiled build, rebuilt here first if src/ changed since. */
export const BIN = path.join(ROOT, 'bin/understudy.js');
ensureBuilt();

export interface ClusterOptions {
  /**
   * 1..89: selects ports 20000 + slot*100 … and addresses 127.(slot/30).((slot%30)*8+i+1).1.
   * Claimed for the test process when absent (slots.ts); give one only when the test needs
   * the slot's addresses before its cluster starts (then claim it with claimSlot too).
   */
  slot?: number;
  hosts?: { name: string; storage: 'array-a' | 'array-b'; boot?: boolean; cpus?: number; memoryMb?: number }[];
  standby?: string[];
  replication?: 'async' | 'sync';
  env?: Record<string, string>;
  /** Run the controller inside this storage processor (`up --controller-on`). */
  controllerOn?: string;
  /** Restore points into the vault: { every: '1s', keep: 5 }. */
  backup?: { every: string; keep: number };
  /** Extra `set` rules for the site's transform, after the standard one: [{ file, set: { key: template } }]. */
  transform?: { file: string; set: Record<string, string> }[];
  /** the site's `volume.readonly` portion, e.g. ['catalog.db', 'public/']. */
  readonly?: string[];
  /** the site's `scale`: { max: 2, cooldown: '3s', stabilization: '3s' }. */
  scale?: { max: number; cooldown?: string; stabilization?: string; readPaths?: string[] };
  /**
   * The whole config, instead of the one-site default (e.g. two sites sharing a pool).
   * Use the given ports and addresses so that the slot stays its own.
   */
  /**
   * The site's `health` settings; each absent part keeps the
   * default below (probe: every 100ms, timeout 300ms, fall 2, rise 1; the others: the config's defaults).
   */
  health?: {
    probe?: { every: string; timeout: string; fall: number; rise: number };
    malfunction?: { errorRate: number; window: string };
    performance?: { p95: string; window: string };
  };
  config?: (ctx: ConfigContext) => ConfigDoc;
  /** `controller.token: { file }` of the default config. */
  tokenFile?: string;
  /** The default config's `cluster:` section (secret, TLS), as the config takes it. */
  cluster?: { secret?: { file: string } | { env: string }; tls?: { ca: string; cert: string; key: string } };
  /** `controller.failover`, as YAML durations: { cooldown: '8s' }. */
  failover?: { cooldown?: string; flapWindow?: string; flapBackoff?: string; drainTimeout?: string };
}

/** Two hosts, both powered: h1 on array-a, h2 on array-b (no spare). */
export const TWO_HOSTS: NonNullable<ClusterOptions['hosts']> = [
  { name: 'h1', storage: 'array-a', boot: true },
  { name: 'h2', storage: 'array-b', boot: true },
];

/** What a `ClusterOptions.config` writer is given: the test's directory, the slot's ports and addresses, the repository's root. */
export interface ConfigContext {
  dir: string;
  ports: ReturnType<typeof ports>;
  address: (i: number) => string;
  root: string;
}

/** A config document as the YAML file holds it (written with yaml.stringify). */
export type ConfigDoc = Record<string, unknown>;

/** The `controller:`, `director:` and `storage:` sections of a config on the slot's ports, in the test's directory (with the vault when `vault`). */
export function configHead(ctx: ConfigContext, opts: { vault?: boolean } = {}): ConfigDoc {
  return {
    controller: { listen: `127.0.0.1:${ctx.ports.controller}`, state: `${ctx.dir}/state` },
    director: { listen: `127.0.0.1:${ctx.ports.director}` },
    storage: {
      'array-a': { path: `${ctx.dir}/array-a`, listen: `127.0.0.1:${ctx.ports.storageA}` },
      'array-b': { path: `${ctx.dir}/array-b`, listen: `127.0.0.1:${ctx.ports.storageB}` },
      ...(opts.vault ? { vault: { path: `${ctx.dir}/vault`, listen: `127.0.0.1:${ctx.ports.vault}`, backup: true } } : {}),
    },
  };
}

/** The start of a `sites:` entry that runs the demo shop on the slot's front `i` and app port 3000 + `i`. */
export function shopSite(ctx: ConfigContext, i: number): { front: string; app: ConfigDoc } {
  return {
    front: `127.0.0.1:${ctx.ports.front + i}`,
    app: { command: ['node', `${ctx.root}/examples/shop/server.js`], port: 3000 + i, seed: `${ctx.root}/examples/shop/seed` },
  };
}

/** The `hosts:` section of a config: each host on the slot's next address, powered locally, 1 cpu and 512 MiB unless its `profile` says otherwise. */
export function hostsSection(
  ctx: ConfigContext,
  hosts: { name: string; storage: 'array-a' | 'array-b'; boot: boolean; profile?: { cpus: number; memoryMb: number } }[],
): ConfigDoc {
  return Object.fromEntries(
    hosts.map((h, i) => [
      h.name,
      { address: ctx.address(i), storage: h.storage, power: 'local', boot: h.boot, profile: h.profile ?? { cpus: 1, memoryMb: 512 } },
    ]),
  );
}

/** The YAML text of a config document, headed by a comment that names who generated it. */
export function configYaml(doc: ConfigDoc, generatedBy: string): string {
  return `# generated by ${generatedBy}\n${stringifyYaml(doc)}`;
}

export interface Cluster {
  /** The loopback slot the cluster runs on (ports(slot), slotAddress(slot, i)). */
  slot: number;
  dir: string;
  configFile: string;
  front: string;
  api: string;
  hostAddress: (name: string) => string;
  up: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/** Host i's loopback address in a slot: a /24 of its own, so that every host is on its own subnet. */
export function slotAddress(slot: number, i: number): string {
  return `127.${Math.floor(slot / 30)}.${(slot % 30) * 8 + i + 1}.1`;
}

export function ports(slot: number) {
  const base = 20000 + slot * 100;
  return { controller: base, director: base + 1, storageA: base + 10, storageB: base + 11, vault: base + 12, front: base + 20 };
}

export function writeConfig(opts: ClusterOptions & { slot: number }, dir: string): string {
  const p = ports(opts.slot);
  const hosts = opts.hosts ?? [
    { name: 'h1', storage: 'array-a' as const, boot: true },
    { name: 'h2', storage: 'array-b' as const, boot: true },
    { name: 'h3', storage: 'array-b' as const, boot: false },
  ];
  const addr = (i: number) => slotAddress(opts.slot, i);
  if (opts.config) {
    const file = path.join(dir, 'understudy.yaml');
    fs.writeFileSync(file, configYaml(opts.config({ dir, ports: p, address: addr, root: ROOT }), 'test/support/cluster.ts'));
    return file;
  }
  const health = opts.health ?? {};
  const config = {
    ...(opts.cluster ? { cluster: opts.cluster } : {}),
    controller: {
      listen: `127.0.0.1:${p.controller}`,
      state: `${dir}/state`,
      ...(opts.tokenFile ? { token: { file: opts.tokenFile } } : {}),
      ...(opts.failover ? { failover: opts.failover } : {}),
    },
    director: { listen: `127.0.0.1:${p.director}` },
    storage: {
      'array-a': { path: `${dir}/array-a`, listen: `127.0.0.1:${p.storageA}` },
      'array-b': { path: `${dir}/array-b`, listen: `127.0.0.1:${p.storageB}` },
      vault: { path: `${dir}/vault`, listen: `127.0.0.1:${p.vault}`, backup: true },
    },
    hosts: Object.fromEntries(
      hosts.map((h, i) => [
        h.name,
        { address: addr(i), storage: h.storage, power: 'local', boot: h.boot ?? false, profile: { cpus: h.cpus ?? 1, memoryMb: h.memoryMb ?? 512 } },
      ]),
    ),
    sites: {
      shop: {
        front: `127.0.0.1:${p.front}`,
        app: { command: ['node', `${ROOT}/examples/shop/server.js`], port: 3000, seed: `${ROOT}/examples/shop/seed` },
        primary: hosts[0]!.name,
        standby: opts.standby ?? hosts.slice(1).map((h) => h.name),
        volume: {
          replication: opts.replication ?? 'async',
          ...(opts.readonly ? { readonly: opts.readonly } : {}),
          ...(opts.backup ? { backup: { to: 'vault', ...opts.backup } } : {}),
        },
        transform: [
          { file: 'config/site.json', set: { 'listen.host': '{{host.address}}', 'listen.port': '{{site.app.port}}', workers: '{{host.profile.cpus}}' } },
          ...(opts.transform ?? []),
        ],
        health: {
          probe: { path: '/healthz', every: '100ms', timeout: '300ms', fall: 2, rise: 1, ...health.probe },
          ...(health.malfunction ? { malfunction: health.malfunction } : {}),
          ...(health.performance ? { performance: health.performance } : {}),
        },
        ...(opts.scale ? { scale: opts.scale } : {}),
      },
    },
  };
  const file = path.join(dir, 'understudy.yaml');
  fs.writeFileSync(file, configYaml(config, 'test/support/cluster.ts'));
  return file;
}

/** Directories this process made for clusters; removed when it exits (see testDir). */
const testDirs: string[] = [];

/**
 * A fresh directory for a test's cluster or machines. It is removed when the test process
 * exits, after every test of the file and its cleanup ran (a test may look into it after
 * stopping its cluster); UNDERSTUDY_E2E_KEEP=1 keeps them, to read a failed run's logs.
 */
export function testDir(prefix: string): string {
  if (testDirs.length === 0 && !process.env.UNDERSTUDY_E2E_KEEP) {
    process.on('exit', () => {
      for (const d of testDirs) fs.rmSync(d, { recursive: true, force: true });
    });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  testDirs.push(dir);
  return dir;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const opts = { ...options, slot: options.slot ?? claimSlot() };
  const dir = testDir(`understudy-e2e-${opts.slot}-`);
  const configFile = writeConfig(opts, dir);
  const p = ports(opts.slot);
  let out = '';
  const up = spawn(process.execPath, [BIN, 'up', '-c', configFile, ...(opts.controllerOn ? ['--controller-on', opts.controllerOn] : [])], {
    cwd: ROOT,
    env: { ...process.env, UNDERSTUDY_LOG_LEVEL: 'warn', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  up.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  up.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const cluster: Cluster = {
    slot: opts.slot,
    dir,
    configFile,
    up,
    front: `http://127.0.0.1:${p.front}`,
    api: `http://127.0.0.1:${p.controller}`,
    hostAddress: (name) => {
      const doc = parseYaml(fs.readFileSync(configFile, 'utf8')) as { hosts: Record<string, { address: string }> };
      return doc.hosts[name]!.address;
    },
    output: () => out,
    stop: async () => {
      await interruptThenKill(up);
      killRecordedHosts(path.join(dir, 'state'));
      killProcessesOf(dir);
    },
  };
  const deadline = Date.now() + 90_000;
  while (!out.includes('understudy is up')) {
    if (up.exitCode !== null || Date.now() > deadline) {
      await cluster.stop();
      throw new Error(`understudy up did not come up:\n${out}`);
    }
    await sleep(100);
  }
  return cluster;
}

/** Last resort for cleanup: SIGKILL every process group a relay recorded. */
export function killRecordedHosts(stateDir: string): void {
  const file = path.join(stateDir, 'understudy.db');
  if (!fs.existsSync(file)) return;
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    for (const r of db.prepare('SELECT pgid FROM relays WHERE pgid IS NOT NULL').all() as { pgid: number }[]) {
      try {
        process.kill(-r.pgid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
  } catch {
    // no relays table: nothing was started
  } finally {
    db.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface HttpAnswer {
  status: number;
  servedBy: string | null;
  body: unknown;
  at: number;
}

/** `text` parsed as JSON, or the text itself when it is not JSON. */
export function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export async function http(url: string, init: { method?: string; body?: unknown; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    headers: init.body === undefined ? {} : { 'content-type': 'application/json' },
    headersTimeout: init.timeoutMs ?? 10_000,
    bodyTimeout: init.timeoutMs ?? 10_000,
  });
  const body = jsonOrText(await res.body.text());
  const sb = res.headers['x-served-by'];
  return { status: res.statusCode, servedBy: typeof sb === 'string' ? sb : null, body, at: Date.now() };
}

/** Places one order through the front and asserts that `host` took it (201); returns the answer. */
export async function orderTakenBy(c: Cluster, host: string, customer: string): Promise<HttpAnswer> {
  const w = await http(`${c.front}/api/orders`, { method: 'POST', body: { customer, items: [{ productId: 1, qty: 1 }] } });
  assert.equal(w.status, 201, `the order of ${customer} taken (${JSON.stringify(w.body)})`);
  assert.ok(w.servedBy?.startsWith(`${c.hostAddress(host)}:`), `the order of ${customer} taken by ${host} (${w.servedBy})`);
  return w;
}

export async function api<T>(cluster: Cluster, p: string, body?: unknown): Promise<T> {
  const r = await http(`${cluster.api}${p}`, { method: body === undefined ? 'GET' : 'POST', body, timeoutMs: 60_000 });
  if (r.status >= 400) throw new Error(`${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as T;
}

export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}

/** Waits until the (single) site serves with replication streaming; returns that status. */
export async function waitStreaming<T extends { sites: { state: string; replication: { state: string } }[] }>(cluster: Cluster): Promise<T> {
  return waitUntil(
    'serving and replication streaming',
    async () => {
      const st = await api<T>(cluster, '/v1/status');
      const s = st.sites[0]!;
      return s.state === 'serving' && s.replication.state === 'streaming' ? st : null;
    },
    60_000,
    50,
  );
}
