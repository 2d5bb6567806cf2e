import type { UnderstudyConfig } from '../config/types.ts';
import type { SiteMonitor } from '../monitor/site-monitor.ts';
import type { RelayDriver } from '../power/relay.ts';
import type { DatabaseStatus, VolumeStatus } from '../shared/contracts.ts';
import type { SiteRecord, SiteState } from '../state/state-store.ts';
import { endpointToString } from '../config/types.ts';
import type { HostConfig, SiteConfig } from '../config/types.ts';
import { appLaunch, volumeDir } from './site-facts.ts';

/** The status contract: `status --json` and GET /v1/status. */
export interface StatusView {
  sites: {
    name: string;
    state: SiteState;
    epoch: number;
    front: string;
    /** `probes`: what the site monitor of this primary has seen since it started (a lost probe that raised nothing still counts). */
    primary: {
      host: string;
      address: string;
      healthy: boolean;
      probes?: { sent: number; failed: number; lastFailedAt: number | null };
      /** The app's command line on this host, templates rendered (`app.command`). */
      command?: string[];
    };
    /** Read-only hosts; `state` adding | serving | removing (only `serving` ones get reads). */
    readers: { host: string; address: string; healthy: boolean; state?: string; since?: number }[];
    /**
     * `sync` (sync mode, confirmed) or `degraded` (sync mode, releasing writes unconfirmed); absent in async mode.
     * `lagMs` is the worst of the volume's databases and files now, `lagPeakMs` the worst of the
     * last 2 s (`lagOf` names whose); `unprotected`
     * lists databases whose changes are not reaching the replica (the site is then `degraded`).
     */
    replication: {
      mode: string;
      to: string | null;
      state: string;
      lagMs: number | null;
      lagPeakMs?: number;
      lagOf?: string;
      sync?: 'sync' | 'degraded';
      unprotected?: string[];
    };
    /** Every SQLite database of the primary's volume (found by header, whatever its name): see contracts' DatabaseStatus. */
    databases: SiteDatabase[];
    /**
     * The host that would take the site over if its primary failed now, and the storage
     * system whose replica it would promote (placement.ts `nextTakeover`); null when none
     * could (no replica, or no host on its storage system is trusted and free), and while
     * the site is failing over or down.
     */
    next: { host: string; storage: string } | null;
  }[];
  /**
   * `trust` (ActionGovernor): `trusted`; `recovering` (it failed: needs `rise` good
   * probes before it is used again); `held-out` (it flapped: not used until its backoff ends).
   */
  hosts: {
    name: string;
    address: string;
    power: 'on' | 'off';
    pid: number | null;
    storage: string;
    sites: string[];
    trust?: { state: string; why: string; heldUntil: number | null };
  }[];
  storage: { name: string; up: boolean; backup: boolean }[];
}

/** A database of a site as `status` shows it. */
export type SiteDatabase = Pick<DatabaseStatus, 'path' | 'mode' | 'method' | 'state' | 'protected' | 'lagMs' | 'reason' | 'lastError' | 'switchedToWal'>;

function siteDatabase(d: DatabaseStatus): SiteDatabase {
  return {
    path: d.path,
    mode: d.mode,
    method: d.method,
    state: d.state,
    protected: d.protected,
    lagMs: d.lagMs,
    ...(d.switchedToWal ? { switchedToWal: true } : {}),
    ...(d.reason ? { reason: d.reason } : {}),
    ...(d.lastError ? { lastError: d.lastError } : {}),
  };
}

/** The databases of a shipping volume whose changes are not reaching the replica. */
export function unprotectedDatabases(vol: VolumeStatus | undefined): DatabaseStatus[] {
  return (vol?.replication?.databases ?? []).filter((d) => !d.protected);
}

export function buildStatus(input: {
  config: UnderstudyConfig;
  sites: SiteRecord[];
  relay: RelayDriver;
  monitors: ReadonlyMap<string, SiteMonitor>;
  volume: (storage: string, site: string) => VolumeStatus | undefined;
  storageUp: (storage: string) => boolean;
  trust?: (host: string) => { state: string; why: string; heldUntil: number | null };
  /** The site's readers (scale-controller.ts), with their probe's health. */
  readers?: (site: string) => { host: string; address: string; healthy: boolean; state: string; since: number }[];
  /** Who would take the site over now (placement.ts `nextTakeover`). */
  next?: (rec: SiteRecord) => { host: string; storage: string } | null;
}): StatusView {
  const { config } = input;
  const sites = input.sites
    .filter((s) => config.sites[s.site])
    .map((rec) => {
      const cfg = config.sites[rec.site]!;
      const host = config.hosts[rec.primaryHost]!;
      const monitor = input.monitors.get(rec.site);
      const vol = input.volume(host.storage, rec.site);
      const rep = vol?.replication;
      // A serving site whose protection is impaired is reported degraded: replication in error,
      // or sync mode releasing writes before the replica confirms them.
      // So is one with a database whose changes do not reach the replica (DatabaseStatus.protected).
      const unprotected = unprotectedDatabases(vol).map((d) => d.path);
      const impaired =
        rec.state === 'serving' && (rep?.state === 'error' || vol?.sync?.state === 'degraded' || (!rec.replicaStorage && !rep) || unprotected.length > 0);
      return {
        name: rec.site,
        state: impaired ? ('degraded' as const) : rec.state,
        epoch: rec.epoch,
        front: endpointToString(cfg.front),
        primary: {
          host: host.name,
          address: host.address,
          healthy: !!monitor?.healthy && monitor.target.host === host.name,
          command: renderedCommand(host, cfg, volumeDir(config, host.storage, rec.site)),
          ...(monitor && monitor.target.host === host.name
            ? { probes: { sent: monitor.counts.probes, failed: monitor.counts.failed, lastFailedAt: monitor.counts.lastFailedAt } }
            : {}),
        },
        readers: input.readers?.(rec.site) ?? [],
        replication: {
          mode: cfg.volume.replication,
          to: rep?.to ?? rec.replicaStorage,
          state: rep ? rep.state : rec.replicaStorage ? 'unknown' : 'none',
          lagMs: rep ? rep.lagMs : null,
          ...(rep?.lagPeakMs !== undefined ? { lagPeakMs: rep.lagPeakMs } : {}),
          ...(rep?.lagOf ? { lagOf: rep.lagOf } : {}),
          ...(cfg.volume.replication === 'sync' && vol?.sync ? { sync: vol.sync.state } : {}),
          ...(unprotected.length > 0 ? { unprotected } : {}),
        },
        next: rec.state === 'serving' || rec.state === 'starting' ? (input.next?.(rec) ?? null) : null,
        databases: (rep?.databases ?? vol?.databases ?? []).map(siteDatabase),
      };
    });
  const hosts = Object.values(config.hosts).map((h) => {
    const r = input.relay.status(h.name);
    return {
      name: h.name,
      address: h.address,
      power: r.power,
      pid: r.pid,
      storage: h.storage,
      sites: input.sites.filter((s) => s.primaryHost === h.name && s.state !== 'down').map((s) => s.site),
      ...(input.trust ? { trust: pickTrust(input.trust(h.name)) } : {}),
    };
  });
  const storage = Object.values(config.storage).map((s) => ({ name: s.name, up: input.storageUp(s.name), backup: s.backup }));
  return { sites, hosts, storage };
}

function pickTrust(t: { state: string; why: string; heldUntil: number | null }): { state: string; why: string; heldUntil: number | null } {
  return { state: t.state, why: t.why, heldUntil: t.heldUntil };
}

/** Checked at config load for every host of the site, so it renders; a failure shows as its message rather than breaking status. */
function renderedCommand(host: HostConfig, site: SiteConfig, dataDir: string): string[] {
  try {
    return appLaunch(host, site, dataDir).command;
  } catch (e) {
    return [`(cannot render: ${(e as Error).message})`];
  }
}
