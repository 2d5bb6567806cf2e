import type { UnderstudyConfig } from '../config/types.ts';
import type { ActionGovernor } from './action-governor.ts';
import type { SiteRecord, StateStore } from '../state/state-store.ts';
import type { PartClients } from './clients.ts';
import { placeReplica, replicaMove, replicaOptions, standing, takeoverHosts, type PlacementFacts } from './placement.ts';
import { holdsFrom } from './pool-facts.ts';

export interface ReprotectionDeps {
  config: UnderstudyConfig;
  store: Pick<StateStore, 'listSites' | 'runningRunbooks' | 'getSite' | 'putSite' | 'addEvent'>;
  /** Host trust; absent: every host is trusted. */
  governor?: Pick<ActionGovernor, 'trust'>;
  readers?: () => { site: string; host: string }[];
  /** False for a storage system known to be down (the controller's storage polls). */
  storageUp?: (storage: string) => boolean;
}

/** The facts placement.ts decides on, as the state store, the governor and the storage polls say now. */
export function placementFacts(deps: ReprotectionDeps): PlacementFacts {
  const sites = deps.store.listSites();
  return {
    trusted: (h) => deps.governor?.trust(h).trusted ?? true,
    holds: holdsFrom(sites, deps.store.runningRunbooks(), deps.readers?.() ?? []),
    replicas: sites.map((s) => ({ site: s.site, storage: s.replicaStorage })),
    ...(deps.storageUp ? { storageUp: deps.storageUp } : {}),
  };
}

/** Where the replica of `site` goes when it starts running on `primaryHost` (bootstrap, failover, switchover, restore). */
export function replicaStorageFor(deps: ReprotectionDeps, site: string, primaryHost: string): string | null {
  return placeReplica(deps.config, deps.config.sites[site]!, primaryHost, placementFacts(deps))?.storage ?? null;
}

/**
 * Keeps a serving site protected (asked by the reconcile loop, level-based): an
 * unprotected site gets a replica where placement.ts says, once that storage
 * system is up (`reprotected`); a replica whose storage system has no host left
 * that could take the site over is moved to one that has (`replica-moved`): a
 * host there was taken by another site, or failed and is not trusted again, while
 * another, say the old primary powered on and trusted again, is able. Returns the
 * site's record as it is afterwards. `facts`: given by a caller that looks at many
 * sites in a row (placementFacts reads every site record).
 */
export async function keepProtected(
  deps: ReprotectionDeps & { clients: Pick<PartClients, 'replicate'> },
  rec: SiteRecord,
  facts: PlacementFacts = placementFacts(deps),
): Promise<SiteRecord> {
  const { config, store } = deps;
  const cfg = config.sites[rec.site]!;
  const primaryStorage = config.hosts[rec.primaryHost]!.storage;
  if (!rec.replicaStorage) {
    const place = placeReplica(config, cfg, rec.primaryHost, facts);
    if (!place || deps.storageUp?.(place.storage) === false) return rec;
    await deps.clients.replicate(primaryStorage, rec.site, rec.epoch, place.storage);
    const next = { ...rec, replicaStorage: place.storage };
    store.putSite(next);
    store.addEvent({
      site: rec.site,
      host: null,
      kind: 'reprotected',
      message: `${rec.site} replicates to ${place.storage} again (${place.host} can take it over from there)`,
      data: { replica: place.storage, host: place.host, standing: place.standing },
    });
    return { ...next, updatedAt: Date.now() };
  }
  const move = replicaMove(config, cfg, rec.primaryHost, rec.replicaStorage, facts);
  if (!move) return rec;
  const from = rec.replicaStorage;
  const here = replicaOptions(config, cfg, rec.primaryHost, facts).filter((o) => o.storage === from);
  const why = here.length === 0 ? `none of ${rec.site}'s hosts is attached to ${from}` : describeStandings(config, cfg.name, from, facts);
  await deps.clients.replicate(primaryStorage, rec.site, rec.epoch, move.storage);
  const next = { ...rec, replicaStorage: move.storage };
  store.putSite(next);
  store.addEvent({
    site: rec.site,
    host: move.host,
    kind: 'replica-moved',
    message: `${rec.site}'s replica moves from ${from} to ${move.storage}: no host on ${from} can take ${rec.site} over now (${why}); ${move.host} on ${move.storage} can. Replication copies the volume there (only what differs, if an older copy is there)`,
    data: { from, to: move.storage, host: move.host, standing: move.standing },
  });
  return { ...next, updatedAt: Date.now() };
}

/** "s2 is held by another site; s3 is not trusted" for the site's hosts on `storage`. */
function describeStandings(config: UnderstudyConfig, site: string, storage: string, facts: PlacementFacts): string {
  const cfg = config.sites[site]!;
  const hosts = takeoverHosts(cfg).filter((h) => config.hosts[h]?.storage === storage);
  return hosts
    .map((h) => {
      const s = standing(config, cfg, h, facts);
      if (s === 'held') {
        const hold = facts.holds.find((x) => x.host === h && x.site !== site && x.as !== 'reader')!;
        return `${h} is the ${hold.as === 'primary' ? 'primary' : 'runbook target'} of ${hold.site}`;
      }
      if (s === 'unusable')
        return facts.storageUp?.(storage) === false ? `${storage} is down` : `${h} is not trusted (it failed and has not had its good probes)`;
      return `${h} is ${s}`;
    })
    .join('; ');
}
