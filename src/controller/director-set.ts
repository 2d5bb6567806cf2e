import type { RouteTable, SiteStats, UpstreamStats } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * Several directors that share the sites' fronts (`director.members`: a floating
 * address moved by VRRP between them). The controller keeps each one's route table
 * the same and reads their traffic as one.
 *
 * - A route goes to every director; the step that sends it is done once one director
 *   has it (the other may be down: the reconcile gives it the routes when it is back,
 *   and it takes the front only once it has them).
 * - A route counts as in force only where every director that answers has the same
 *   one; any difference makes the reconcile send it again, to all (idempotent).
 * - Stats: latency windows are taken from the director that carried the most of them,
 *   since percentiles do not add; counters are combined so that they only grow
 *   (DirectorCounters, below).
 */

/** Of the answers of every director, the first success; a refusal for a stale epoch wins over any success. */
export function firstAccepted<T>(results: PromiseSettledResult<T>[]): T {
  const stale = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && (r.reason as { code?: string }).code === 'US_STALE_EPOCH');
  if (stale) throw stale.reason;
  const ok = results.find((r): r is PromiseFulfilledResult<T> => r.status === 'fulfilled');
  if (ok) return ok.value;
  throw allFailed(results);
}

function allFailed(results: PromiseSettledResult<unknown>[]): Error {
  const reasons = results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok'));
  const first = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason as Error | undefined;
  if (results.length === 1 && first) return first;
  return new UnderstudyError('US_UNREACHABLE', `no director answered: ${reasons.join('; ')}`);
}

const sameRoute = (a: RouteTable, b: RouteTable): boolean =>
  a.epoch === b.epoch &&
  a.primary === b.primary &&
  JSON.stringify([...a.readers].sort()) === JSON.stringify([...b.readers].sort()) &&
  JSON.stringify(a.sync ?? null) === JSON.stringify(b.sync ?? null);

/** The routes every answering director agrees on (a site missing from one, or different, is left out). */
export function agreedRoutes(results: PromiseSettledResult<RouteTable[]>[]): RouteTable[] {
  const answers = results.filter((r): r is PromiseFulfilledResult<RouteTable[]> => r.status === 'fulfilled').map((r) => r.value);
  if (answers.length === 0) throw allFailed(results);
  const [first, ...rest] = answers;
  return first!.filter((route) =>
    rest.every((other) => {
      const o = other.find((x) => x.site === route.site);
      return o !== undefined && sameRoute(o, route);
    }),
  );
}

/** One view of the traffic of every answering director (see the file comment). */
export function mergedStats(results: PromiseSettledResult<SiteStats[]>[]): SiteStats[] {
  const answers = results.filter((r): r is PromiseFulfilledResult<SiteStats[]> => r.status === 'fulfilled').map((r) => r.value);
  if (answers.length === 0) throw allFailed(results);
  if (answers.length === 1) return answers[0]!;
  const sites = new Map<string, SiteStats>();
  for (const list of answers) {
    for (const s of list) {
      const have = sites.get(s.site);
      if (!have) {
        sites.set(s.site, structuredClone(s));
        continue;
      }
      have.epoch = Math.max(have.epoch, s.epoch);
      have.held += s.held;
      have.heldTimedOut += s.heldTimedOut;
      if (s.sync) {
        if (!have.sync) have.sync = structuredClone(s.sync);
        else
          have.sync = {
            waits: have.sync.waits + s.sync.waits,
            degraded: have.sync.degraded + s.sync.degraded,
            timeouts: have.sync.timeouts + s.sync.timeouts,
            unreachable: have.sync.unreachable + s.sync.unreachable,
            latencyMs: { ...(have.sync.latencyMs.count >= s.sync.latencyMs.count ? have.sync : s.sync).latencyMs },
          };
      }
      for (const u of s.upstreams) {
        const h = have.upstreams.find((x) => x.upstream === u.upstream);
        if (!h) have.upstreams.push(structuredClone(u));
        else mergeUpstream(h, u);
      }
    }
  }
  return [...sites.values()];
}

function mergeUpstream(into: UpstreamStats, u: UpstreamStats): void {
  if (u.latencyMs.count > into.latencyMs.count) into.latencyMs = { ...u.latencyMs };
  if (u.recentLatencyMs.count > into.recentLatencyMs.count) into.recentLatencyMs = { ...u.recentLatencyMs };
  into.requests += u.requests;
  into.errors5xx += u.errors5xx;
  into.connErrors += u.connErrors;
  into.inflight += u.inflight;
  into.lastConnErrorAt = Math.max(into.lastConnErrorAt ?? 0, u.lastConnErrorAt ?? 0) || null;
  if (u.shed !== undefined || into.shed !== undefined) into.shed = (into.shed ?? 0) + (u.shed ?? 0);
  if (u.shed5xx !== undefined || into.shed5xx !== undefined) into.shed5xx = (into.shed5xx ?? 0) + (u.shed5xx ?? 0);
  if (u.kinds) {
    into.kinds ??= [];
    for (const k of u.kinds) {
      const h = into.kinds.find((x) => x.kind === k.kind);
      if (!h) into.kinds.push(structuredClone(k));
      else {
        h.requests += k.requests;
        h.errors += k.errors;
        h.shed += k.shed;
        if (k.samples) h.samples = [...(h.samples ?? []), ...k.samples].slice(-3);
      }
    }
  }
}

/**
 * The cumulative counters of several directors as one set of counters that only grows,
 * as the detectors need (monitor/counter-series.ts reads a counter that goes down as a
 * director restart and starts its window again). Summing the directors' own counters
 * would not do: one director missing a poll would make the sum drop, and its return
 * would add its whole history to a single window. So each director's increase since its
 * previous answer is added: a director that restarted (its counter went down) adds what
 * it counted since; one first seen after the first poll adds nothing until its next
 * answer; one that does not answer adds nothing.
 */
export class DirectorCounters {
  private readonly last = new Map<string, Map<string, number>>();
  private readonly totals = new Map<string, number>();
  private polls = 0;

  /** `answers`: each director's stats by its name, null when it did not answer. */
  merge(answers: Map<string, SiteStats[] | null>): SiteStats[] {
    const first = this.polls++ === 0;
    for (const [director, stats] of answers) {
      if (stats === null) continue;
      const now = counters(stats);
      const before = this.last.get(director);
      for (const [key, value] of now) {
        const prev = before?.get(key);
        const inc = prev === undefined ? (before === undefined && !first ? 0 : value) : value >= prev ? value - prev : value;
        this.totals.set(key, (this.totals.get(key) ?? 0) + inc);
      }
      this.last.set(director, now);
    }
    const merged = mergedStats(
      [...answers.values()].map((s) =>
        s === null ? { status: 'rejected' as const, reason: new Error('no answer') } : { status: 'fulfilled' as const, value: s },
      ),
    );
    for (const s of merged) {
      const t = (k: string): number => this.totals.get(`${s.site}|${k}`) ?? 0;
      s.heldTimedOut = t('heldTimedOut');
      if (s.sync) for (const f of SYNC_COUNTERS) s.sync[f] = t(`sync.${f}`);
      for (const u of s.upstreams) {
        for (const f of UPSTREAM_COUNTERS) if (f in u || this.totals.has(`${s.site}|${u.upstream}|${f}`)) u[f] = t(`${u.upstream}|${f}`);
        for (const k of u.kinds ?? []) for (const f of KIND_COUNTERS) k[f] = t(`${u.upstream}|kind:${k.kind}|${f}`);
      }
    }
    return merged;
  }
}

const UPSTREAM_COUNTERS = ['requests', 'errors5xx', 'connErrors', 'shed', 'shed5xx'] as const;
const KIND_COUNTERS = ['requests', 'errors', 'shed'] as const;
const SYNC_COUNTERS = ['waits', 'degraded', 'timeouts', 'unreachable'] as const;

/** Every cumulative counter of one director's stats, by `site|…` key. */
function counters(stats: SiteStats[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of stats) {
    out.set(`${s.site}|heldTimedOut`, s.heldTimedOut);
    if (s.sync) for (const f of SYNC_COUNTERS) out.set(`${s.site}|sync.${f}`, s.sync[f]);
    for (const u of s.upstreams) {
      for (const f of UPSTREAM_COUNTERS) if (u[f] !== undefined) out.set(`${s.site}|${u.upstream}|${f}`, u[f]);
      for (const k of u.kinds ?? []) for (const f of KIND_COUNTERS) out.set(`${s.site}|${u.upstream}|kind:${k.kind}|${f}`, k[f]);
    }
  }
  return out;
}
