import type { UnderstudyConfig } from '../config/types.ts';
import type { NewEvent, StateStore } from '../state/state-store.ts';
import { candidatesFor, holdsFrom } from './pool-facts.ts';
import type { Blocker } from './spare-pool.ts';

/**
 * Tells the operator, while a site still serves, that it has no spare left to fail
 * over to — before a failure finds out. Asked by the reconcile loop: for every
 * serving, protected site, are all the standbys that could take it over (attached to
 * the storage system of its replica) held by other sites, or is there none at all?
 * Then `pool-empty` (`data.waiting: false`) once, and `pool-refilled` when one is free
 * again. From the state store only (like the allocation itself); it remembers just
 * what it last said, so a restarted controller says it once more.
 */
export class PoolWatch {
  private readonly said = new Map<string, string>();

  constructor(
    private readonly deps: {
      config: UnderstudyConfig;
      store: Pick<StateStore, 'listSites' | 'runningRunbooks' | 'addEvents'>;
      readers?: () => { site: string; host: string }[];
    },
  ) {}

  check(): void {
    const { config, store } = this.deps;
    const sites = store.listSites();
    const holds = holdsFrom(sites, store.runningRunbooks(), this.deps.readers?.() ?? []);
    // One spare taken can empty the pool of every site that shares it: one commit for all.
    const events: NewEvent[] = [];
    for (const rec of sites) {
      const cfg = config.sites[rec.site];
      if (!cfg || rec.state !== 'serving' || !rec.replicaStorage) continue;
      const candidates = candidatesFor(config, cfg, { failed: rec.primaryHost, replicaStorage: rec.replicaStorage });
      const blockers: Blocker[] = [];
      for (const h of candidates) {
        // A reader gives way to a failover: it does not empty the pool.
        const hold = holds.find((x) => x.host === h && x.site !== rec.site && x.as !== 'reader');
        if (!hold) break;
        blockers.push({ host: h, why: 'held', site: hold.site, as: hold.as, priority: config.sites[hold.site]?.priority ?? 0 });
      }
      const empty = blockers.length === candidates.length;
      const sig = empty ? `${rec.replicaStorage}:${blockers.map((b) => `${b.host}/${b.site}/${b.as}`).join(',')}` : '';
      const before = this.said.get(rec.site);
      if (sig === before || (before === undefined && !empty)) {
        this.said.set(rec.site, sig);
        continue;
      }
      this.said.set(rec.site, sig);
      const event: NewEvent = empty
        ? {
            site: rec.site,
            host: null,
            kind: 'pool-empty',
            message: `${rec.site} (priority ${cfg.priority}) serves on ${rec.primaryHost} but has no spare left to fail over to: ${
              blockers.length === 0
                ? `no standby is attached to ${rec.replicaStorage}, which holds its replica`
                : blockers.map((b) => `${b.host} is the ${b.as === 'primary' ? 'primary' : 'runbook target'} of ${b.site} (priority ${b.priority})`).join('; ')
            }. A failure of ${rec.primaryHost} now would leave ${rec.site} down until a spare is free again`,
            data: { waiting: false, priority: cfg.priority, replicaStorage: rec.replicaStorage, blockers, eligible: candidates.length },
          }
        : {
            site: rec.site,
            host: null,
            kind: 'pool-refilled',
            message: `${rec.site} has a free spare to fail over to again`,
            data: { replicaStorage: rec.replicaStorage },
          };
      events.push(event);
    }
    store.addEvents(events);
  }
}
