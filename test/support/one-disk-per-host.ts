import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { StatusView } from '../../src/controller/status-view.ts';
import type { EventRecord } from '../../src/state/state-store.ts';
import { api, http, slotAddress, sleep, startCluster, waitUntil, type Cluster, type ClusterOptions } from './cluster.ts';

/**
 * The usual layout of a shop's hosting: one disk per host. Every host has a storage
 * system of its own (`disk-<host>`), so a site's replica lives with exactly one host
 * that can promote it. Built as an object and written with yaml.stringify.
 */

export interface LayoutSite {
  name: string;
  primary: string;
  /** A pool name or a list of hosts. */
  standby: string | string[];
  replication: 'sync' | 'async';
}

export interface Layout {
  hosts: string[];
  pools?: Record<string, string[]>;
  sites: LayoutSite[];
  /** `controller.failover`, as YAML durations. */
  failover?: { cooldown?: string; flapWindow?: string; flapBackoff?: string };
}

/** `startCluster`'s `config` for a layout. Storage processors listen on base+10…, fronts on base+20…. */
export function oneDiskPerHost(layout: Layout): NonNullable<ClusterOptions['config']> {
  return (ctx) => {
    const base = ctx.ports.controller;
    const doc = {
      controller: { listen: `127.0.0.1:${base}`, state: `${ctx.dir}/state`, ...(layout.failover ? { failover: layout.failover } : {}) },
      director: { listen: `127.0.0.1:${ctx.ports.director}` },
      storage: Object.fromEntries(layout.hosts.map((h, i) => [storageOf(h), { path: `${ctx.dir}/${storageOf(h)}`, listen: `127.0.0.1:${base + 10 + i}` }])),
      hosts: Object.fromEntries(
        layout.hosts.map((h, i) => [h, { address: ctx.address(i), storage: storageOf(h), power: 'local', boot: true, profile: { cpus: 1, memoryMb: 512 } }]),
      ),
      ...(layout.pools ? { pools: layout.pools } : {}),
      sites: Object.fromEntries(
        layout.sites.map((s, j) => [
          s.name,
          {
            front: `127.0.0.1:${ctx.ports.front + j}`,
            app: { command: ['node', `${ctx.root}/examples/shop/server.js`], port: 3000 + j, seed: `${ctx.root}/examples/shop/seed` },
            primary: s.primary,
            standby: s.standby,
            volume: { replication: s.replication },
            transform: [{ file: 'config/site.json', set: { 'listen.host': '{{host.address}}', 'listen.port': '{{site.app.port}}' } }],
            health: { probe: { path: '/healthz', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } },
          },
        ]),
      ),
    };
    return doc;
  };
}

export function storageOf(host: string): string {
  return `disk-${host}`;
}

/** A cluster of `layout`, stopped at the test's end, and the address of each of its hosts. */
export async function startLayout(t: Pick<TestContext, 'after'>, layout: Layout): Promise<{ cluster: Cluster; addr: Record<string, string> }> {
  const cluster = await startCluster({ config: oneDiskPerHost(layout) });
  t.after(() => cluster.stop());
  return { cluster, addr: addresses(layout, cluster.slot) };
}

/** Asserts that `evs` hold one failover-complete, from `from` to `to` (`label` names the round); returns it. */
export function assertOneFailover(evs: EventRecord[], label: string, from: string, to: string): EventRecord {
  const complete = evs.filter((e) => e.kind === 'failover-complete');
  assert.equal(complete.length, 1, `one failover in ${label}: ${evs.map((e) => e.kind).join(', ')}`);
  assert.equal(complete[0]!.data.from, from);
  assert.equal(complete[0]!.data.to, to);
  return complete[0]!;
}

/** Asserts that each of `hosts` (at the addresses `addr`) took some of the `acked` orders. */
export function assertOrdersTakenBy(acked: { servedBy: string | null }[], addr: Record<string, string>, hosts: string[], label = ''): void {
  for (const h of hosts)
    assert.ok(
      acked.some((o) => o.servedBy?.startsWith(`${addr[h]}:`)),
      `${label}orders taken by ${h}`,
    );
}

/** Asserts that every host but `host` is powered on: no other host was fenced. */
export function assertOthersOn(st: StatusView, host: string, label = ''): void {
  assert.ok(
    st.hosts.filter((h) => h.name !== host).every((h) => h.power === 'on'),
    `${label}no other host was fenced: ${st.hosts.map((h) => `${h.name} ${h.power}`).join(', ')}`,
  );
}

/** The address of each host of a layout, by name. */
export function addresses(layout: Layout, slot: number): Record<string, string> {
  return Object.fromEntries(layout.hosts.map((h, i) => [h, slotAddress(slot, i)]));
}

/** The front of the j-th site of a layout (`cluster.front` is the first). */
export function frontOf(cluster: Cluster, j: number): string {
  return cluster.front.replace(/:(\d+)$/, (_, p: string) => `:${Number(p) + j}`);
}

export type Site = StatusView['sites'][number];

export async function status(cluster: Cluster): Promise<StatusView> {
  return api<StatusView>(cluster, '/v1/status');
}

export async function events(cluster: Cluster): Promise<EventRecord[]> {
  return (await api<{ events: EventRecord[] }>(cluster, '/v1/events?limit=5000')).events;
}

export function siteOf(st: StatusView, name: string): Site {
  const s = st.sites.find((x) => x.name === name);
  if (!s) throw new Error(`no site ${name} in the status`);
  return s;
}

/**
 * Waits until `site` serves on `primary`, replicating (streaming) to the disk of
 * `next`, with `next` named as the host that would take over — and in sync mode
 * with writes confirmed (`sync`), so that a kill now loses no acknowledged write.
 */
export async function waitProtected(cluster: Cluster, site: string, primary: string, next: string, timeoutMs = 30_000): Promise<Site> {
  return waitUntil(
    `${site} serving on ${primary}, protected by ${next}`,
    async () => {
      const s = siteOf(await status(cluster), site);
      const ok =
        s.state === 'serving' &&
        s.primary.host === primary &&
        s.primary.healthy &&
        s.replication.state === 'streaming' &&
        s.replication.to === storageOf(next) &&
        s.next?.host === next &&
        s.next.storage === storageOf(next) &&
        (s.replication.mode !== 'sync' || s.replication.sync === 'sync');
      return ok ? s : null;
    },
    timeoutMs,
    100,
  );
}

/**
 * SIGKILLs the whole process group of `host` (agent and app) and proves it is gone.
 * Returns when it was killed.
 */
export async function killHost(cluster: Cluster, host: string): Promise<{ at: number; pid: number }> {
  const h = (await status(cluster)).hosts.find((x) => x.name === host)!;
  if (h.power !== 'on' || !h.pid) throw new Error(`${host} is not running (power ${h.power}, pid ${h.pid})`);
  const at = Date.now();
  process.kill(-h.pid, 'SIGKILL');
  await waitUntil(
    `the process group of ${host} gone`,
    async () => {
      try {
        process.kill(h.pid!, 0);
        return false;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'ESRCH';
      }
    },
    5000,
    20,
  );
  return { at, pid: h.pid };
}

/** Waits until `front` answers its health check from `address`. */
export async function waitServedBy(front: string, address: string, timeoutMs = 30_000): Promise<number> {
  await waitUntil(
    `${front} served by ${address}`,
    async () => {
      const r = await http(`${front}/healthz`, { timeoutMs: 1000 }).catch(() => null);
      return r?.status === 200 && r.servedBy?.startsWith(`${address}:`);
    },
    timeoutMs,
    20,
  );
  return Date.now();
}

/** Powers `host` on through the API and waits until the controller trusts it again (`host-trusted` after `since`). */
export async function powerOnAndTrust(cluster: Cluster, host: string, since: number): Promise<void> {
  await api(cluster, `/v1/hosts/${host}/power`, { action: 'on' });
  await waitUntil(
    `${host} trusted again`,
    async () => (await events(cluster)).some((e) => e.kind === 'host-trusted' && e.host === host && e.id > since),
    30_000,
    100,
  );
}

/** The id of the newest event (to look only at what happens after it). */
export async function lastEventId(cluster: Cluster): Promise<number> {
  return (await events(cluster)).at(-1)?.id ?? 0;
}

export { sleep };
