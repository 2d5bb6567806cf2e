import type { UnderstudyConfig } from '../config/types.ts';
import type { SiteMonitor } from '../monitor/site-monitor.ts';
import type { RelayDriver } from '../power/relay.ts';
import type { VolumeStatus } from '../shared/contracts.ts';
import type { SiteRecord, SiteState } from '../state/state-store.ts';
import { endpointToString } from '../config/types.ts';

/** The status contract of DESIGN.md ("Status JSON"): `status --json` and GET /v1/status. */
export interface StatusView {
  sites: {
    name: string;
    state: SiteState;
    epoch: number;
    front: string;
    primary: { host: string; address: string; healthy: boolean };
    readers: { host: string; address: string; healthy: boolean }[];
    replication: { mode: string; to: string | null; state: string; lagMs: number | null };
  }[];
  hosts: { name: string; address: string; power: 'on' | 'off'; pid: number | null; storage: string; sites: string[] }[];
  storage: { name: string; up: boolean; backup: boolean }[];
}

export function buildStatus(input: {
  config: UnderstudyConfig;
  sites: SiteRecord[];
  relay: RelayDriver;
  monitors: Map<string, SiteMonitor>;
  volume: (storage: string, site: string) => VolumeStatus | undefined;
  storageUp: (storage: string) => boolean;
}): StatusView {
  const { config } = input;
  const sites = input.sites.filter((s) => config.sites[s.site]).map((rec) => {
    const cfg = config.sites[rec.site]!;
    const host = config.hosts[rec.primaryHost]!;
    const monitor = input.monitors.get(rec.site);
    const vol = input.volume(host.storage, rec.site);
    const rep = vol?.replication;
    return {
      name: rec.site,
      state: rec.state,
      epoch: rec.epoch,
      front: endpointToString(cfg.front),
      primary: { host: host.name, address: host.address, healthy: !!monitor?.healthy && monitor.target.host === host.name },
      readers: [],
      replication: {
        mode: cfg.volume.replication,
        to: rep?.to ?? rec.replicaStorage,
        state: rep ? rep.state : rec.replicaStorage ? 'unknown' : 'none',
        lagMs: rep ? rep.lagMs : null,
      },
    };
  });
  const hosts = Object.values(config.hosts).map((h) => {
    const r = input.relay.status(h.name);
    return {
      name: h.name, address: h.address, power: r.power, pid: r.pid, storage: h.storage,
      sites: input.sites.filter((s) => s.primaryHost === h.name && s.state !== 'down').map((s) => s.site),
    };
  });
  const storage = Object.values(config.storage).map((s) => ({ name: s.name, up: input.storageUp(s.name), backup: s.backup }));
  return { sites, hosts, storage };
}
