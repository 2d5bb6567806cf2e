import type { SiteConfig, UnderstudyConfig } from '../config/types.ts';
import type { RunbookRecord, SiteRecord } from '../state/state-store.ts';
import { takeoverHosts } from './placement.ts';
import type { Claim, Hold } from './spare-pool.ts';

/**
 * Who holds which host and who waits for a failover target, derived from the
 * state store only (site records, running runbooks, readers), never remembered:
 * the allocation of a shared pool is whatever these say, so it survives a
 * controller restart and cannot drift from the truth.
 */

/** Runbook kinds whose `data.target` occupies a host while they run. */
const TARGETING = new Set(['failover', 'switchover', 'restore']);

/** What the store says a failover runbook has decided so far (see FailoverData). */
interface FailoverFields {
  oldPrimary?: unknown;
  detectedAt?: unknown;
  requestedTarget?: unknown;
  target?: unknown;
  avoid?: unknown;
}

/**
 * Hosts held by sites: each site's recorded primary (whatever the site's state —
 * a down site still owns the copy on its host's storage), each running runbook's
 * chosen target, and each reader.
 */
export function holdsFrom(sites: SiteRecord[], running: RunbookRecord[], readers: { site: string; host: string }[] = []): Hold[] {
  const holds: Hold[] = sites.map((s) => ({ host: s.primaryHost, site: s.site, as: 'primary' as const }));
  for (const rb of running) {
    const target = (rb.data as FailoverFields).target;
    if (rb.status === 'running' && TARGETING.has(rb.kind) && typeof target === 'string') holds.push({ host: target, site: rb.site, as: 'target' });
  }
  for (const r of readers) holds.push({ host: r.host, site: r.site, as: 'reader' });
  return holds;
}

/**
 * The hosts that can take `site` over when its replica is on `replicaStorage`: of
 * its standbys and then its configured primary (placement.ts `takeoverHosts`), those
 * attached to that storage system, without the failed host; just `[requested]` when
 * an operator named one (and it qualifies).
 */
export function candidatesFor(
  config: UnderstudyConfig,
  site: SiteConfig,
  opts: { failed: string; replicaStorage: string | null; requested?: string },
): string[] {
  if (!opts.replicaStorage) return [];
  return (opts.requested !== undefined ? [opts.requested] : takeoverHosts(site))
    .filter((h) => h !== opts.failed)
    .filter((h) => config.hosts[h]?.storage === opts.replicaStorage);
}

/** Every running failover that has not chosen its target yet: the sites that wait for a spare. */
export function claimsFrom(config: UnderstudyConfig, sites: SiteRecord[], running: RunbookRecord[]): Claim[] {
  const claims: Claim[] = [];
  for (const rb of running) {
    const d = rb.data as FailoverFields;
    const cfg = config.sites[rb.site];
    const rec = sites.find((s) => s.site === rb.site);
    if (rb.status !== 'running' || rb.kind !== 'failover' || typeof d.target === 'string' || !cfg || !rec) continue;
    if (claims.some((c) => c.site === rb.site)) continue; // one runbook per site runs at a time
    const failed = typeof d.oldPrimary === 'string' ? d.oldPrimary : rec.primaryHost;
    claims.push({
      site: rb.site,
      priority: cfg.priority,
      detectedAt: typeof d.detectedAt === 'number' ? d.detectedAt : rb.startedAt,
      candidates: candidatesFor(config, cfg, {
        failed,
        replicaStorage: rec.replicaStorage,
        ...(typeof d.requestedTarget === 'string' ? { requested: d.requestedTarget } : {}),
      }),
      ...(Array.isArray(d.avoid) ? { avoid: d.avoid.filter((h): h is string => typeof h === 'string') } : {}),
    });
  }
  return claims;
}

export function priorities(config: UnderstudyConfig): Record<string, number> {
  return Object.fromEntries(Object.values(config.sites).map((s) => [s.name, s.priority]));
}

/**
 * Why `site` may not move onto `host` because another site holds it (its primary,
 * a running runbook's target), or undefined. For the checks of an operator's
 * `failover --to` and `switchover --to`, made before anything is held or fenced.
 * A reader of another site is not in the way of a failover (it is taken back),
 * but it is of a switchover, which takes no reader back.
 */
export function heldElsewhere(
  config: UnderstudyConfig,
  state: { sites: SiteRecord[]; running: RunbookRecord[]; readers?: { site: string; host: string }[] },
  site: string,
  host: string,
  action: 'failover' | 'switchover',
): string | undefined {
  const holds = holdsFrom(state.sites, state.running, state.readers ?? []).filter((h) => h.site !== site && h.host === host);
  const hold = holds.find((h) => h.as !== 'reader') ?? (action === 'switchover' ? holds[0] : undefined);
  if (!hold) return undefined;
  const what = hold.as === 'primary' ? 'the primary of' : hold.as === 'target' ? 'the target of a running runbook of' : 'a reader of';
  return `${host} is ${what} ${hold.site} (priority ${config.sites[hold.site]?.priority ?? 0}), and a host of a shared pool serves one site at a time: choose another host, or move ${hold.site} off ${host} first`;
}
