/**
 * Spare pools shared between sites: which site may take which host as its
 * failover target. Pure logic over facts; it keeps no state of its own. The facts
 * are derived each time from the state store (which host is whose primary, reader
 * or runbook target; which sites wait for a target: `pool-facts.ts`) and from a
 * physical look at the hosts (`target-choice.ts`), so a restarted controller makes
 * the same decisions and nothing can drift.
 *
 * The rules (docs/configuration.md, "pools"):
 *
 * - A host held by a site — its primary, the target of one of its running
 *   runbooks — is not free for any other site. A serving primary is never taken
 *   back, whatever the priorities.
 * - A host that is a *reader* of a site (read-only scale-out) is free for a
 *   failover of any site: failover beats scale-out. It is taken only when no
 *   host is free outright, and the grant names the site to take it from.
 * - Sites that wait for a target at the same time are served in rank order:
 *   higher `priority` first; at equal priority the site whose failure was
 *   detected first; then by name (a total order: every caller ranks alike).
 *   Each takes its first usable host (warm before cold, then its standby order)
 *   that no higher-ranked site took.
 * - A site that gets nothing waits: `spare-denied` when a higher-ranked site took
 *   the spare it could have had, else `pool-empty` (every candidate is held,
 *   unusable, or there is none).
 */

/** How a site holds a host. */
export type HoldKind = 'primary' | 'target' | 'reader';

/** A host occupied by a site. */
export interface Hold {
  host: string;
  site: string;
  as: HoldKind;
}

/** A site that wants a failover target now (its running failover has not chosen one yet). */
export interface Claim {
  site: string;
  priority: number;
  /** When the failure was detected (epoch ms): at equal priority the earlier wins. */
  detectedAt: number;
  /**
   * Hosts that could take the site, in its order of preference: standbys attached
   * to the storage system that holds its replica, without the failed host.
   */
  candidates: string[];
  /**
   * Candidates taken only when no other one is usable: the host the site's last
   * failover came from, when this failover was let through its cooldown as an
   * independent crash (ActionGovernor), so that it does not go back to that host.
   */
  avoid?: string[];
}

/**
 * What a look at a host found. `warm`: powered, its agent answers and runs no app
 * (or only the reader a hold records); `cold`: powered off, the runbook boots it;
 * `unusable`: not now (booting, untrusted, running an app nothing records …).
 */
export type Readiness =
  | { state: 'warm' }
  | { state: 'cold' }
  | { state: 'unusable'; why: string; booting?: boolean; /** A stable name of the reason (the `why` may carry counts and times). */ code?: string };

export interface PoolFacts {
  /** Every site's priority (`sites.X.priority`, default 0). */
  priorities: Record<string, number>;
  holds: Hold[];
  claims: Claim[];
  /** Hosts absent here are taken as warm. */
  readiness: Record<string, Readiness>;
}

/** Why a candidate could not be given to a site. */
export interface Blocker {
  host: string;
  /** `held`: another site holds it; `taken`: a higher-ranked waiting site gets it; `unusable`: see `detail`. */
  why: 'held' | 'taken' | 'unusable';
  site?: string;
  as?: HoldKind;
  priority?: number;
  detectedAt?: number;
  detail?: string;
  /** With `unusable`: the stable name of the reason (`untrusted`, `held-out`, `booting`, `busy` …). */
  code?: string;
}

export type Decision =
  | { kind: 'granted'; site: string; host: string; warm: boolean; reclaim?: { from: string } }
  | { kind: 'wait'; site: string; event: 'pool-empty' | 'spare-denied'; blockers: Blocker[] };

/** Rank order of waiting sites: priority high → low, then detection early → late, then name. */
export function compareClaims(a: Claim, b: Claim): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.detectedAt !== b.detectedAt) return a.detectedAt - b.detectedAt;
  return a.site < b.site ? -1 : a.site > b.site ? 1 : 0;
}

/** The decision for every claim, in rank order. */
export function allocate(facts: PoolFacts): Decision[] {
  const claims = [...facts.claims].sort(compareClaims);
  const held = new Map<string, Hold>();
  const readerOf = new Map<string, Hold>();
  for (const h of facts.holds) {
    if (h.as === 'reader') {
      if (!readerOf.has(h.host)) readerOf.set(h.host, h);
    } else if (!held.has(h.host)) held.set(h.host, h);
  }
  const taken = new Map<string, Claim>();
  const readiness = (h: string): Readiness => facts.readiness[h] ?? { state: 'warm' };
  const decisions: Decision[] = [];

  for (const c of claims) {
    const open = c.candidates.filter((h) => {
      const hold = held.get(h);
      return !taken.has(h) && (hold === undefined || hold.site === c.site) && readiness(h).state !== 'unusable';
    });
    const outright = open.filter((h) => !readerOf.has(h) || readerOf.get(h)!.site === c.site);
    const preferred = outright.filter((h) => !c.avoid?.includes(h));
    const pick = preferred.find((h) => readiness(h).state === 'warm') ?? preferred[0] ?? outright.find((h) => readiness(h).state === 'warm') ?? outright[0];
    if (pick !== undefined) {
      taken.set(pick, c);
      const own = readerOf.get(pick);
      decisions.push({ kind: 'granted', site: c.site, host: pick, warm: readiness(pick).state === 'warm', ...(own ? { reclaim: { from: own.site } } : {}) });
      continue;
    }
    // No free host: take a reader of another site back (failover beats scale-out).
    const preferredReaders = open.filter((h) => !c.avoid?.includes(h));
    const reader =
      preferredReaders.find((h) => readiness(h).state === 'warm') ?? preferredReaders[0] ?? open.find((h) => readiness(h).state === 'warm') ?? open[0];
    if (reader !== undefined) {
      taken.set(reader, c);
      decisions.push({ kind: 'granted', site: c.site, host: reader, warm: readiness(reader).state === 'warm', reclaim: { from: readerOf.get(reader)!.site } });
      continue;
    }
    const blockers = c.candidates.map((h): Blocker => {
      const winner = taken.get(h);
      if (winner) return { host: h, why: 'taken', site: winner.site, priority: winner.priority, detectedAt: winner.detectedAt };
      const hold = held.get(h);
      if (hold && hold.site !== c.site) return { host: h, why: 'held', site: hold.site, as: hold.as, priority: facts.priorities[hold.site] ?? 0 };
      const r = readiness(h);
      return r.state === 'unusable'
        ? { host: h, why: 'unusable', detail: r.why, ...(r.code !== undefined ? { code: r.code } : {}) }
        : { host: h, why: 'unusable', detail: 'unknown' };
    });
    decisions.push({ kind: 'wait', site: c.site, event: blockers.some((b) => b.why === 'taken') ? 'spare-denied' : 'pool-empty', blockers });
  }
  return decisions;
}

/** The decision for one site, or undefined when it has no claim. */
export function decisionFor(facts: PoolFacts, site: string): Decision | undefined {
  return allocate(facts).find((d) => d.site === site);
}

/**
 * The reclaim hook: which of `candidates` a failover of `site` could take back
 * from a reader of another site, and from whom. (Readers of the site itself are
 * its own to reuse: they are not listed.)
 */
export function reclaimable(facts: PoolFacts, site: string, candidates: string[]): { host: string; from: string }[] {
  const out: { host: string; from: string }[] = [];
  for (const h of candidates) {
    if (facts.holds.some((x) => x.host === h && x.as !== 'reader')) continue;
    const r = facts.holds.find((x) => x.host === h && x.as === 'reader' && x.site !== site);
    if (r) out.push({ host: h, from: r.site });
  }
  return out;
}

/**
 * Whether a scale-out of `site` may take `host` as a reader now: nobody holds it
 * (a reader of the same site is fine only for that site), and no waiting failover
 * is given it. A reader never takes a host a failover is waiting for.
 */
export function freeForReader(facts: PoolFacts, site: string, host: string): { free: true } | { free: false; why: string } {
  const hold = facts.holds.find((x) => x.host === host && !(x.as === 'reader' && x.site === site));
  if (hold) return { free: false, why: `${host} is ${describeHold(hold, facts.priorities)}` };
  const given = allocate(facts).find((d) => d.kind === 'granted' && d.host === host);
  if (given) return { free: false, why: `${host} goes to the failover of ${given.site}, which is waiting for a target` };
  return { free: true };
}

function describeHold(h: Hold, priorities: Record<string, number>): string {
  const what = h.as === 'primary' ? 'the primary of' : h.as === 'target' ? 'the target of a running runbook of' : 'a reader of';
  return `${what} ${h.site} (priority ${priorities[h.site] ?? 0})`;
}

/**
 * The operator's sentence for a site that waits: which host is whose, the
 * priorities, and what returns a spare.
 */
export function describeWait(d: Extract<Decision, { kind: 'wait' }>, facts: PoolFacts, context: { replicaStorage: string }): string {
  const mine = facts.priorities[d.site] ?? 0;
  if (d.blockers.length === 0) {
    return `no spare for ${d.site} (priority ${mine}): no standby is attached to ${context.replicaStorage}, which holds its replica`;
  }
  const parts = d.blockers.map((b) => {
    if (b.why === 'taken') {
      const when = b.detectedAt !== undefined ? new Date(b.detectedAt).toISOString() : 'unknown';
      const rank = b.priority !== mine ? `higher priority ${b.priority} than ${mine}` : `same priority ${mine}, failed first (detected ${when})`;
      return `${b.host} goes to ${b.site}, which also waits for a target (${rank})`;
    }
    if (b.why === 'held') return `${b.host} is ${describeHold({ host: b.host, site: b.site!, as: b.as! }, facts.priorities)}`;
    return `${b.host} is not usable now (${b.detail})`;
  });
  const head = d.event === 'spare-denied' ? `${d.site} (priority ${mine}) lost the last spare` : `no spare is free for ${d.site} (priority ${mine})`;
  return (
    `${head}: ${parts.join('; ')}. ${d.site} stays down and takes the first spare on ${context.replicaStorage} that becomes free ` +
    '(a site that holds one fails back to its repaired host, or a standby is powered on and trusted again)'
  );
}
