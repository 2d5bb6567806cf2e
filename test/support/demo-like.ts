import { request } from 'undici';
import { configHead, hostsSection, jsonOrText, shopSite, type ConfigContext, type ConfigDoc } from './cluster.ts';

/**
 * A config shaped like examples/demo.yaml (two shops, four hosts, a shared pool of
 * two spares, a vault), on a test slot's own ports and addresses, with fast probes.
 * `extra` is added at the top level (e.g. a `notify:` section).
 */
export function demoLikeConfig(ctx: ConfigContext, opts: { extra?: ConfigDoc; bootSpares?: boolean; backupEvery?: string } = {}): ConfigDoc {
  const spareBoot = opts.bootSpares !== false;
  const large = { cpus: 2, memoryMb: 2048 };
  const small = { cpus: 1, memoryMb: 1024 };
  const site = (i: number) => ({
    ...shopSite(ctx, i),
    primary: i === 0 ? 'h1' : 'h2',
    standby: i === 0 ? 'spares' : ['h4', 'h3'],
    volume: { replication: 'async', readonly: ['catalog.db', 'public/'], backup: { to: 'vault', every: opts.backupEvery ?? '2s', keep: 5 } },
    transform: [
      {
        file: 'config/site.json',
        set: { 'listen.host': '{{host.address}}', 'listen.port': '{{site.app.port}}', workers: '{{host.profile.cpus}}', name: '{{site.name}}' },
      },
    ],
    health: { probe: { path: '/healthz', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } },
  });
  return {
    ...configHead(ctx, { vault: true }),
    hosts: hostsSection(ctx, [
      { name: 'h1', storage: 'array-a', boot: true, profile: large },
      { name: 'h2', storage: 'array-b', boot: true, profile: large },
      { name: 'h3', storage: 'array-b', boot: spareBoot, profile: small },
      { name: 'h4', storage: 'array-a', boot: spareBoot, profile: small },
    ]),
    pools: { spares: ['h3', 'h4'] },
    sites: { shop: site(0), outlet: site(1) },
    ...opts.extra,
  };
}

/** A call to the controller's API with its token (the cluster helper's `api` sends none). */
export async function apiCall<T>(base: string, token: string | null, path: string, body?: unknown, timeoutMs = 60_000): Promise<{ status: number; body: T }> {
  const res = await request(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  return { status: res.statusCode, body: jsonOrText(await res.body.text()) as T };
}

export interface DemoStatus {
  sites: {
    name: string;
    state: string;
    epoch: number;
    primary: { host: string; healthy: boolean };
    replication: { state: string; to: string | null; lagMs: number | null };
    lastFailover?: { from: string; to: string; detectionMs: number; servingAgainMs: number };
  }[];
  hosts: { name: string; power: string; pid: number | null; sites: string[] }[];
}
