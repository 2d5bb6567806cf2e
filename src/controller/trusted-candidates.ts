import type { SiteConfig, UnderstudyConfig } from '../config/types.ts';
import type { ActionGovernor, HostTrust } from './action-governor.ts';
import { candidatesFor } from './pool-facts.ts';

/** A standby left out of an automatic failover because the governor does not trust it (it failed, or flaps). */
export interface SkippedTarget {
  host: string;
  state: HostTrust['state'];
  why: string;
  /** When it may be trusted again by time alone (end of its hold-out); null: it needs good probes. */
  retryAt: number | null;
}

export interface TargetCandidates {
  /** Hosts that could take the site over (pool-facts' candidatesFor), trusted ones only. */
  candidates: string[];
  /** Hosts that would qualify but are not trusted. */
  skipped: SkippedTarget[];
}

/**
 * The standbys an automatic failover of `site` could use, split by the governor's
 * trust: a host that failed needs `rise` good probes, a flapping one waits out its
 * hold-out. Asked before a failover starts (AutoFailover): with every candidate
 * untrusted, fencing a primary that may still half-serve would leave nothing
 * serving. The runbook's own choice (target-choice.ts) applies the same trust rule.
 */
export function trustedCandidates(
  config: UnderstudyConfig,
  site: SiteConfig,
  opts: { failed: string; replicaStorage: string | null },
  governor: Pick<ActionGovernor, 'trust'>,
): TargetCandidates {
  const candidates: string[] = [];
  const skipped: SkippedTarget[] = [];
  for (const h of candidatesFor(config, site, opts)) {
    const t = governor.trust(h);
    if (t.trusted) candidates.push(h);
    else skipped.push({ host: h, state: t.state, why: t.why, retryAt: t.state === 'held-out' ? t.heldUntil : null });
  }
  return { candidates, skipped };
}

/** One line naming every skipped host and why, for events. */
export function describeSkipped(skipped: readonly SkippedTarget[]): string {
  return skipped.map((s) => `${s.host} ${s.state === 'held-out' ? 'is held out' : 'is not trusted yet'} (${s.why})`).join('; ');
}
