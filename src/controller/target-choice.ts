import type { SiteConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { RunbookDeps } from './runbook-journal.ts';
import { candidatesFor, claimsFrom, holdsFrom, priorities } from './pool-facts.ts';
import { takeoverHosts } from './placement.ts';
import { decisionFor, describeWait, type Blocker, type Decision, type Hold, type PoolFacts, type Readiness } from './spare-pool.ts';
import { sleep } from './timing.ts';

/** How long a powered host whose agent does not answer yet is waited for before a cold host is taken instead. */
const BOOTING_WAIT_MS = 5000;
/** How often a site that waits for a spare asks again. */
const WAIT_POLL_MS = 250;

/**
 * Decisions of this controller are made one at a time, each together with its
 * record (the runbook's `target`, through `commit`): two failovers deciding at the
 * same moment therefore never take one host, and the second sees the first's hold.
 */
let decisions: Promise<unknown> = Promise.resolve();
function oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
  const run = decisions.then(fn, fn);
  decisions = run.catch(() => undefined);
  return run;
}

/**
 * A look at a candidate host: not trusted (see RunbookDeps.governor) → unusable;
 * powered off → cold (the runbook boots it); powered and
 * its agent answers and runs no app, or only a reader some hold records → warm;
 * otherwise unusable for now (booting, untrusted, running an app nothing records,
 * or already running this site).
 */
async function lookAt(deps: RunbookDeps, host: string, site: string, holds: Hold[]): Promise<Readiness> {
  // A host that failed is taken again only once it is trusted (ActionGovernor: `rise` good probes, no flap hold-out).
  const trust = deps.governor?.trust(host);
  if (trust && !trust.trusted) return { state: 'unusable', why: `not trusted: ${trust.why}`, code: trust.state };
  if (deps.relay.status(host).power === 'off') return { state: 'cold' };
  let running: string[];
  try {
    const st = await deps.clients.agentStatus(host, 300);
    running = st.sites.filter((s) => s.state === 'running' || s.state === 'starting').map((s) => s.site);
  } catch {
    return { state: 'unusable', why: 'powered on, but its agent does not answer (booting?)', booting: true, code: 'booting' };
  }
  if (running.includes(site) && !holds.some((h) => h.host === host && h.site === site && h.as === 'reader')) {
    return { state: 'unusable', why: `it already runs ${site}`, code: 'runs-site' };
  }
  const unrecorded = running.filter((s) => !holds.some((h) => h.host === host && h.site === s && h.as === 'reader'));
  if (unrecorded.length > 0) return { state: 'unusable', why: `it runs ${unrecorded.join(', ')}`, code: `busy:${unrecorded.join(',')}` };
  return { state: 'warm' };
}

/** The pool as the state store says it is now, with a fresh look at every host some waiting site could take. */
async function poolFacts(
  deps: RunbookDeps,
  site: SiteConfig,
  self: { failed: string; replicaStorage: string | null; requested?: string; detectedAt: number; avoid?: string[] },
): Promise<PoolFacts> {
  const { store, config } = deps;
  const sites = store.listSites();
  const running = store.runningRunbooks();
  const holds = holdsFrom(sites, running, deps.readers?.() ?? []);
  const claims = claimsFrom(config, sites, running);
  // The caller is a claim whether or not its runbook is in the store (a direct call, a test).
  const mine = {
    site: site.name,
    priority: site.priority,
    detectedAt: self.detectedAt,
    candidates: candidatesFor(config, site, self),
    ...(self.avoid?.length ? { avoid: self.avoid } : {}),
  };
  const i = claims.findIndex((c) => c.site === site.name);
  if (i >= 0) claims[i] = mine;
  else claims.push(mine);
  const hosts = [...new Set(claims.flatMap((c) => c.candidates))];
  const looks = await Promise.all(hosts.map(async (h) => [h, await lookAt(deps, h, site.name, holds)] as const));
  return { priorities: priorities(config), holds, claims, readiness: Object.fromEntries(looks) };
}

/** What a wait event says, without what changes by itself (counts of probes, time left): a new event only when this changes. */
function signature(d: Extract<Decision, { kind: 'wait' }>): string {
  return `${d.event}:${d.blockers.map((b: Blocker) => `${b.host}/${b.why}/${b.site ?? ''}/${b.as ?? ''}/${b.code ?? b.detail ?? ''}`).join(',')}`;
}

export interface TargetRequest {
  failed: string;
  replicaStorage: string | null;
  /** The operator's choice (`failover --to`): granted or refused at once, never waited for. */
  requested?: string;
  /** When the failure was detected: at equal priority, the earlier failure gets a contested spare. */
  detectedAt: number;
  /** Hosts taken only when no other candidate is usable (the last failover's source, for a failover let through its cooldown). */
  avoid?: string[];
  /** Records the choice (the runbook's `target`) before any other decision can be made. */
  commit: (host: string) => void;
}

/**
 * Chooses the host a site fails over to, from the pool as the spare-pool rules
 * share it (spare-pool.ts): one of the hosts that may take the site over — its
 * standbys in order, then its configured primary (failback; placement.ts) — not the
 * failed host, attached to the storage system that holds the site's replica, trusted,
 * and not held by another site; a warm host before a cold one; a contested last
 * spare to the higher priority, then the earlier failure. Replica placement follows
 * the same rule, so the replica is where the next target is.
 *
 * When nothing is free the site waits here — state `down`, with a `pool-empty` or
 * `spare-denied` event that names who holds what — and takes the first spare that
 * becomes free. A site none of whose hosts is on the storage system of its replica
 * cannot be taken over by any of them (only a restore or a re-seed can move it
 * there): that raises `pool-empty` and throws US_NO_TARGET at once, as does an
 * operator's `--to` that is not free.
 */
export async function chooseTarget(deps: RunbookDeps, site: SiteConfig, req: TargetRequest): Promise<{ host: string; reclaim?: { from: string } }> {
  const { store } = deps;
  if (!req.replicaStorage) {
    throw new UnderstudyError(
      'US_NO_TARGET',
      `${site.name} has no replica to promote (it was unprotected): bring its primary host back (understudy power HOST on), or restore its newest good restore point (understudy restore ${site.name}) where it has backups`,
    );
  }
  const candidates = candidatesFor(deps.config, site, req);
  if (req.requested !== undefined && candidates.length === 0) {
    throw new UnderstudyError(
      'US_NO_TARGET',
      `${req.requested} cannot take ${site.name}: it is not attached to ${req.replicaStorage}, which holds the replica`,
    );
  }
  if (candidates.length === 0) {
    const message = `no host of ${site.name} (${takeoverHosts(site)
      .filter((h) => h !== req.failed)
      .join(
        ', ',
      )}) is attached to ${req.replicaStorage}, which holds its replica: none can take it over; only a restore onto another host or a re-seed can (understudy restore ${site.name} --to HOST)`;
    store.addEvent({
      site: site.name,
      host: null,
      kind: 'pool-empty',
      message,
      data: { waiting: true, priority: site.priority, replicaStorage: req.replicaStorage, blockers: [], eligible: 0 },
    });
    throw new UnderstudyError('US_NO_TARGET', message);
  }

  const started = Date.now();
  let last = '';
  let waited = false;
  while (true) {
    if (deps.stopping?.()) throw new UnderstudyError('US_STOPPING', `the controller is stopping; the failover of ${site.name} resumes when it starts again`);
    const outcome = await oneAtATime(async () => {
      const facts = await poolFacts(deps, site, req);
      const d = decisionFor(facts, site.name)!;
      if (d.kind === 'granted') {
        const booting = candidates.some((h) => {
          const r = facts.readiness[h];
          return r?.state === 'unusable' && r.booting === true;
        });
        // A powered host that may be booting beats booting a cold one: give it a moment.
        if (!d.warm && booting && Date.now() - started < BOOTING_WAIT_MS && req.requested === undefined) return { retry: true as const };
        req.commit(d.host);
      }
      return { d, facts };
    });
    if ('retry' in outcome) {
      await sleep(50);
      continue;
    }
    const { d, facts } = outcome;
    if (d.kind === 'granted') {
      if (waited) {
        store.setSiteState(site.name, 'failing-over');
        store.addEvent({
          site: site.name,
          host: d.host,
          kind: 'spare-granted',
          message: `${site.name} takes ${d.host}, free again after ${Math.round((Date.now() - started) / 1000)} s of waiting${d.reclaim ? ` (taken back from ${d.reclaim.from}, where it was a reader)` : ''}`,
          data: { host: d.host, waitedMs: Date.now() - started, ...(d.reclaim ? { reclaimFrom: d.reclaim.from } : {}) },
        });
      }
      return { host: d.host, ...(d.reclaim ? { reclaim: d.reclaim } : {}) };
    }
    const message = describeWait(d, facts, { replicaStorage: req.replicaStorage });
    if (req.requested !== undefined) throw new UnderstudyError('US_NO_TARGET', message);
    const sig = signature(d);
    if (sig !== last) {
      last = sig;
      waited = true;
      store.setSiteState(site.name, 'down');
      store.addEvent({
        site: site.name,
        host: null,
        kind: d.event,
        message,
        data: { waiting: true, priority: site.priority, replicaStorage: req.replicaStorage, blockers: d.blockers, eligible: candidates.length },
      });
    }
    await sleep(WAIT_POLL_MS);
  }
}
