import type { SiteConfig, UnderstudyConfig } from '../config/types.ts';
import type { Hold } from './spare-pool.ts';

/**
 * Where a site's replica lives and who takes the site over, from one rule.
 *
 * A failover can only promote the replica, so only a host attached to the storage
 * system that holds it can take the site over (pool-facts.ts `candidatesFor`).
 * Placing the replica is therefore choosing the next target: the replica goes to
 * the storage system of the best host able to take the site over, and a replica
 * whose storage system has no such host left is moved to one that has.
 *
 * The hosts that may take a site over are its standbys, in order, then its
 * configured primary (a failback: once powered on, trusted again and brought up to
 * date by replication, it is a target like any spare). Each is judged by its
 * standing, best first:
 *
 * - `free`: trusted, no other site holds it, and no other site keeps its replica
 *   on that host's storage system for it (a spare of its own);
 * - `shared`: trusted and free, but another site's replica waits on its storage
 *   system too (whichever fails first gets it);
 * - `reader`: trusted, a read-only host of another site (a failover takes it back);
 * - `unusable`: it failed and is not trusted again yet, or its storage system is down;
 * - `held`: another site's primary, or the target of another site's running runbook.
 *
 * The first three can take the site over now ("able"). Pure: the facts come from
 * the state store, the governor and the storage polls, so a restarted controller
 * places alike.
 */

export type Standing = 'free' | 'shared' | 'reader' | 'unusable' | 'held';

const RANK: Record<Standing, number> = { free: 0, shared: 1, reader: 2, unusable: 3, held: 4 };

export function isAble(s: Standing): boolean {
  return RANK[s] <= RANK.reader;
}

export interface PlacementFacts {
  /** Whether the governor trusts the host (a host that failed needs its good probes first). */
  trusted: (host: string) => boolean;
  /** Every site's holds (pool-facts.ts `holdsFrom`). */
  holds: readonly Hold[];
  /** Every site's recorded replica storage system. */
  replicas: readonly { site: string; storage: string | null }[];
  /** False for a storage system known to be down. @default every one is up */
  storageUp?: (storage: string) => boolean;
}

export interface Placement {
  storage: string;
  /** The best host on it, and its standing. */
  host: string;
  standing: Standing;
}

/** The hosts that may take `site` over, in order of preference: its standbys (spares), then its configured primary (failback). */
export function takeoverHosts(site: SiteConfig): string[] {
  return [...new Set([...site.standby, site.primary])];
}

/** How `host` stands for taking `site` over (see the module comment). */
export function standing(config: UnderstudyConfig, site: SiteConfig, host: string, facts: PlacementFacts): Standing {
  const others = facts.holds.filter((h) => h.host === host && h.site !== site.name);
  if (others.some((h) => h.as !== 'reader')) return 'held';
  const storage = config.hosts[host]!.storage;
  if (!facts.trusted(host) || facts.storageUp?.(storage) === false) return 'unusable';
  if (others.length > 0) return 'reader';
  const sharedWith = facts.replicas.some(
    (r) => r.site !== site.name && r.storage === storage && config.sites[r.site] !== undefined && takeoverHosts(config.sites[r.site]!).includes(host),
  );
  return sharedWith ? 'shared' : 'free';
}

/**
 * For every storage system that could hold the replica of `site` while its primary
 * is `primaryHost` (not the primary's own, not a vault), its best host: ranked by
 * standing, then by the order of `takeoverHosts`.
 */
export function replicaOptions(config: UnderstudyConfig, site: SiteConfig, primaryHost: string, facts: PlacementFacts): Placement[] {
  const primaryStorage = config.hosts[primaryHost]?.storage;
  const best = new Map<string, Placement>();
  takeoverHosts(site).forEach((host) => {
    const h = config.hosts[host];
    if (!h || host === primaryHost || h.storage === primaryStorage || config.storage[h.storage]?.backup !== false) return;
    const s = standing(config, site, host, facts);
    const had = best.get(h.storage);
    if (!had || RANK[s] < RANK[had.standing]) best.set(h.storage, { storage: h.storage, host, standing: s });
  });
  // A stable sort keeps the order of takeoverHosts between equals.
  return [...best.values()].sort((a, b) => RANK[a.standing] - RANK[b.standing]);
}

/**
 * Where the replica of `site` should be kept while it runs on `primaryHost`: the
 * storage system of its best host (a free spare first). Null when no host could
 * ever take it over from another storage system: the site runs unprotected.
 */
export function placeReplica(config: UnderstudyConfig, site: SiteConfig, primaryHost: string, facts: PlacementFacts): Placement | null {
  return replicaOptions(config, site, primaryHost, facts)[0] ?? null;
}

/**
 * Whether the replica of `site`, kept on `current`, must move: no host on `current`
 * can take the site over now, and another storage system has one that can. Then the
 * new place; else null. Hysteresis by construction: a replica whose host is still
 * able stays, even when a better one frees up, so it never moves back and forth.
 */
export function replicaMove(config: UnderstudyConfig, site: SiteConfig, primaryHost: string, current: string, facts: PlacementFacts): Placement | null {
  const options = replicaOptions(config, site, primaryHost, facts);
  const here = options.find((o) => o.storage === current);
  if (here && isAble(here.standing)) return null;
  const best = options[0];
  return best && best.storage !== current && isAble(best.standing) ? best : null;
}

/**
 * The host that would take `site` over if its primary failed now, and the storage
 * system it would promote: of the hosts on the replica's storage system, the first
 * able one, a powered one before one that must be booted. Null when none could.
 */
export function nextTakeover(
  config: UnderstudyConfig,
  site: SiteConfig,
  rec: { primaryHost: string; replicaStorage: string | null },
  facts: PlacementFacts & { powered: (host: string) => boolean },
): { host: string; storage: string } | null {
  const storage = rec.replicaStorage;
  if (!storage) return null;
  const on = takeoverHosts(site).filter((h) => h !== rec.primaryHost && config.hosts[h]?.storage === storage);
  const stand = new Map(on.map((h) => [h, standing(config, site, h, facts)] as const));
  // As the allocation does (spare-pool.ts): a host free outright before a reader taken back, warm before cold.
  const outright = on.filter((h) => stand.get(h) === 'free' || stand.get(h) === 'shared');
  const readers = on.filter((h) => stand.get(h) === 'reader');
  const host = outright.find((h) => facts.powered(h)) ?? outright[0] ?? readers.find((h) => facts.powered(h)) ?? readers[0];
  return host === undefined ? null : { host, storage };
}
