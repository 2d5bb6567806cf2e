import type { SiteConfig, UnderstudyConfig } from '../config/types.ts';

/**
 * Which host becomes a site's next reader, or why none can. The one place
 * this is decided, so that pool priorities (spare pools shared between sites) can
 * be applied here later.
 *
 * A reader comes from the site's pool (`standby`, in order) and is:
 *  - not the site's primary, not already a reader (of this or another site), and
 *    not the primary of any other site;
 *  - not the site's failover standby: the first standby attached to the storage
 *    system that holds the replica. Scaling reads must not eat the host a failover
 *    needs; so a pool of one standby never scales out (documented choice).
 * A powered-off host is preferred over one that is on (an idle warm host may be
 * some other site's standby); among equals the pool order decides.
 */
export interface ReaderChoiceInput {
  config: UnderstudyConfig;
  site: SiteConfig;
  primaryHost: string;
  replicaStorage: string | null;
  /** Hosts lent as readers to any site. */
  readersInUse: ReadonlySet<string>;
  /** Primary hosts of every site. */
  primaries: ReadonlySet<string>;
  power: (host: string) => 'on' | 'off';
  /** Why another site holds `host` (its primary, a running runbook's target, its reader), or undefined. */
  heldElsewhere?: (host: string) => string | undefined;
}

export type ReaderChoice = { host: string; why: string } | { host: null; why: string };

export function failoverStandbyOf(site: SiteConfig, config: UnderstudyConfig, primaryHost: string, replicaStorage: string | null): string | null {
  if (!replicaStorage) return null;
  return site.standby.find((h) => h !== primaryHost && config.hosts[h]?.storage === replicaStorage) ?? null;
}

export function chooseReaderHost(input: ReaderChoiceInput): ReaderChoice {
  const { config, site } = input;
  const keep = failoverStandbyOf(site, config, input.primaryHost, input.replicaStorage);
  const skipped: string[] = [];
  const candidates: string[] = [];
  for (const h of site.standby) {
    if (h === input.primaryHost) continue;
    if (h === keep) {
      skipped.push(`${h} (the failover standby)`);
      continue;
    }
    if (input.readersInUse.has(h)) {
      skipped.push(`${h} (already a reader)`);
      continue;
    }
    if (input.primaries.has(h)) {
      skipped.push(`${h} (primary of another site)`);
      continue;
    }
    if (input.heldElsewhere?.(h)) {
      skipped.push(`${h} (held by another site's runbook)`);
      continue;
    }
    if (!config.hosts[h]) continue;
    candidates.push(h);
  }
  const off = candidates.find((h) => input.power(h) === 'off');
  const pick = off ?? candidates[0];
  if (pick) return { host: pick, why: `${pick} is in ${site.name}'s pool and free${skipped.length ? ` (not ${skipped.join(', ')})` : ''}` };
  return {
    host: null,
    why: `no free host in ${site.name}'s pool (${site.standby.join(', ') || 'empty'})${skipped.length ? `: not ${skipped.join(', ')}` : ''}`,
  };
}
