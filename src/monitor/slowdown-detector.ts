import type { UpstreamStats } from '../shared/contracts.ts';

export interface SlowdownDetectorOptions {
  /** The site's p95 objective (`health.performance.p95Ms`). */
  p95Ms: number;
  /** How long a slowdown must last (`health.performance.windowMs`). */
  windowMs: number;
  /**
   * The span of the director's latency window (LatencyWindow: 10 s). A slow burst
   * stays in the director's p95 for that long after it ended, so the condition must
   * hold for `windowMs + statsWindowMs` before it is raised: a burst shorter than
   * `windowMs − 1 s` (one slot of the director's ring) is then never raised. Pass 0
   * if the p95s given are already over `windowMs`. @default 10000
   */
  statsWindowMs?: number;
  /** Slow relative to itself: p95 above this many times the host's baseline. @default 3 */
  baselineFactor?: number;
  /** The baseline is the median p95 of the host's calm samples over this span. @default 300000 */
  baselineMs?: number;
  /** One baseline sample at most this often. @default 5000 */
  baselineSampleMs?: number;
  /** Baseline samples needed before the relative rule applies. @default 6 */
  baselineMinSamples?: number;
  /** The relative rule ignores p95s below this (2 ms → 7 ms is not a slowdown). @default p95Ms / 2 */
  baselineMinMs?: number;
  /** A host with fewer requests in the director's window is not judged. @default 20 */
  minRequests?: number;
  /** All hosts slow with p95s within this factor of each other: a global slowdown. @default 2 */
  globalFactor?: number;
  /** Clock (ms). @default Date.now */
  now?: () => number;
}

/** What one host's latency looked like at the decision. */
export interface HostLatencyEvidence {
  upstream: string;
  p95Ms: number;
  count: number;
  /** Median calm p95 of the last `baselineMs`, null until enough samples. */
  baselineP95Ms: number | null;
  overThreshold: boolean;
  overBaseline: boolean;
  /** Since when it has been slow without interruption (null: not slow). */
  slowSince: number | null;
}

export interface SlowdownEvidence {
  /** Every host judged (enough requests), slow or not. */
  hosts: HostLatencyEvidence[];
  /** The hosts slow for the whole hold (for `global-slowdown`: every host judged). */
  slowHosts: string[];
  thresholdP95Ms: number;
  windowMs: number;
  holdMs: number;
  baselineFactor: number;
  /** Highest p95 over lowest among judged hosts. */
  spread: number | null;
}

/**
 * - `slowdown`: one or more hosts have been slow for the whole hold while others
 *   are not (or there is one host): add capacity (scale-out), never fail over.
 * - `global-slowdown`: every host of the site slowed together, to within
 *   `globalFactor` of each other: a shared cause (load, storage, the machine), never
 *   a reason to fail over. A host counts as slowed together when it is slow or nearly
 *   (p95 at least half of `p95Ms`): a standby's p95 comes from a few probes a second,
 *   and under a shared cause it lands just under the threshold as often as just over
 *   it; judged strictly, that made a global slowdown look like the primary's alone and
 *   added a reader that could not help.
 * - `slowdown-cleared`: no host has been slow for a whole `windowMs`.
 */
export type SlowdownKind = 'slowdown' | 'global-slowdown';
export interface SlowdownDecision {
  kind: SlowdownKind | 'slowdown-cleared';
  at: number;
  reason: string;
  evidence: SlowdownEvidence;
}

interface HostState {
  samples: { at: number; p95: number }[];
  lastSampleAt: number;
  slowSince: number | null;
}

type Level = { kind: SlowdownKind | 'none'; hosts: string[] };

/**
 * p95 of the real traffic of every host of one site, from successive director
 * snapshots. A host is slow when its p95 exceeds the site's `p95Ms`, or exceeds
 * `baselineFactor` × its own calm baseline (and `baselineMinMs`). A slowdown is
 * raised only once a host has been slow at every observation for the hold; it is
 * reported once, then again only when its kind or its hosts change and the new
 * state has lasted `windowMs`; it clears after `windowMs` with no slow host.
 */
export class SlowdownDetector {
  private readonly now: () => number;
  private readonly o: Required<Omit<SlowdownDetectorOptions, 'now'>>;
  private readonly holdMs: number;
  private readonly hosts = new Map<string, HostState>();
  private reported: Level = { kind: 'none', hosts: [] };
  private candidate: Level = { kind: 'none', hosts: [] };
  private candidateSince = 0;
  private lastEvidence: SlowdownEvidence | null = null;

  constructor(opts: SlowdownDetectorOptions) {
    if (!(opts.p95Ms > 0) || !(opts.windowMs > 0)) throw new RangeError('SlowdownDetector: p95Ms and windowMs must be > 0');
    this.now = opts.now ?? Date.now;
    this.o = {
      p95Ms: opts.p95Ms,
      windowMs: opts.windowMs,
      statsWindowMs: opts.statsWindowMs ?? 10_000,
      baselineFactor: opts.baselineFactor ?? 3,
      baselineMs: opts.baselineMs ?? 300_000,
      baselineSampleMs: opts.baselineSampleMs ?? 5_000,
      baselineMinSamples: opts.baselineMinSamples ?? 6,
      baselineMinMs: opts.baselineMinMs ?? opts.p95Ms / 2,
      minRequests: opts.minRequests ?? 20,
      globalFactor: opts.globalFactor ?? 2,
    };
    this.holdMs = this.o.windowMs + this.o.statsWindowMs;
  }

  /** The level last reported: what the controller should currently believe. */
  get level(): SlowdownKind | 'none' {
    return this.reported.kind;
  }

  /** The evidence of the last observation (for status pages). */
  get evidence(): SlowdownEvidence | null {
    return this.lastEvidence;
  }

  /**
   * One director snapshot of every upstream of the site (`SiteStats.upstreams`).
   * An entry's own `minRequests` replaces the option's (sampled hosts, which see a
   * few probes a second rather than real traffic).
   * Returns a decision only when the reported level changes.
   */
  observe(upstreams: readonly (Pick<UpstreamStats, 'upstream' | 'latencyMs'> & { minRequests?: number })[]): SlowdownDecision | null {
    const at = this.now();
    const judged: HostLatencyEvidence[] = [];
    const present = new Set<string>();
    for (const u of upstreams) {
      present.add(u.upstream);
      const st = this.state(u.upstream);
      const { p95, count } = u.latencyMs;
      if (count < (u.minRequests ?? this.o.minRequests)) {
        st.slowSince = null;
        continue;
      }
      const baseline = this.baseline(st, at);
      const overThreshold = p95 > this.o.p95Ms;
      const overBaseline = baseline !== null && p95 >= this.o.baselineMinMs && p95 > this.o.baselineFactor * baseline;
      if (overThreshold || overBaseline) {
        st.slowSince ??= at;
      } else {
        st.slowSince = null;
        // Only calm samples make the baseline, so that a slowdown does not become its own norm.
        if (at - st.lastSampleAt >= this.o.baselineSampleMs) {
          st.samples.push({ at, p95 });
          st.lastSampleAt = at;
        }
      }
      judged.push({ upstream: u.upstream, p95Ms: p95, count, baselineP95Ms: baseline, overThreshold, overBaseline, slowSince: st.slowSince });
    }
    for (const [name, st] of this.hosts) if (!present.has(name)) st.slowSince = null;

    const slowNow = judged.filter((h) => h.slowSince !== null);
    const sustained = slowNow.filter((h) => at - h.slowSince! >= this.holdMs);
    const p95s = judged.map((h) => h.p95Ms).filter((p) => p > 0);
    const spread = p95s.length > 0 ? Math.max(...p95s) / Math.min(...p95s) : null;
    let level: Level;
    if (sustained.length === 0) level = { kind: 'none', hosts: [] };
    else if (
      judged.length >= 2 &&
      spread !== null &&
      spread <= this.o.globalFactor &&
      judged.every((h) => h.slowSince !== null || h.p95Ms >= this.o.p95Ms / 2)
    ) {
      level = { kind: 'global-slowdown', hosts: judged.map((h) => h.upstream).sort() };
    } else level = { kind: 'slowdown', hosts: sustained.map((h) => h.upstream).sort() };

    const evidence: SlowdownEvidence = {
      hosts: judged,
      slowHosts: level.hosts,
      thresholdP95Ms: this.o.p95Ms,
      windowMs: this.o.windowMs,
      holdMs: this.holdMs,
      baselineFactor: this.o.baselineFactor,
      spread,
    };
    this.lastEvidence = evidence;

    if (!sameLevel(level, this.candidate)) {
      this.candidate = level;
      this.candidateSince = at;
    }
    if (sameLevel(this.candidate, this.reported)) return null;
    // From calm, the hold already passed. Any other change must last a window.
    // "Calm" for clearing means no host slow at all, not merely none sustained.
    if (this.reported.kind !== 'none') {
      if (this.candidate.kind === 'none' && slowNow.length > 0) {
        this.candidateSince = at;
        return null;
      }
      if (at - this.candidateSince < this.o.windowMs) return null;
    }
    this.reported = this.candidate;
    return { kind: level.kind === 'none' ? 'slowdown-cleared' : level.kind, at, reason: this.reason(level, evidence), evidence };
  }

  reset(): void {
    this.hosts.clear();
    this.reported = { kind: 'none', hosts: [] };
    this.candidate = { kind: 'none', hosts: [] };
    this.lastEvidence = null;
  }

  private state(upstream: string): HostState {
    let st = this.hosts.get(upstream);
    if (!st) {
      st = { samples: [], lastSampleAt: -Infinity, slowSince: null };
      this.hosts.set(upstream, st);
    }
    return st;
  }

  private baseline(st: HostState, at: number): number | null {
    while (st.samples.length > 0 && st.samples[0]!.at < at - this.o.baselineMs) st.samples.shift();
    if (st.samples.length < this.o.baselineMinSamples) return null;
    const sorted = st.samples.map((s) => s.p95).sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  }

  private reason(level: Level, e: SlowdownEvidence): string {
    const fmt = (h: HostLatencyEvidence): string =>
      `${h.upstream} p95 ${Math.round(h.p95Ms)} ms${h.baselineP95Ms !== null ? ` (baseline ${Math.round(h.baselineP95Ms)} ms)` : ''}`;
    if (level.kind === 'none') return `no host slower than p95 ${e.thresholdP95Ms} ms or ${e.baselineFactor}× its baseline for ${e.windowMs} ms`;
    const slow = e.hosts
      .filter((h) => level.hosts.includes(h.upstream))
      .map(fmt)
      .join(', ');
    if (level.kind === 'global-slowdown') {
      return `every host slowed together (${slow}; within ${e.spread?.toFixed(1)}× of each other) for ${e.holdMs} ms: a shared cause, not a host's fault`;
    }
    const others = e.hosts
      .filter((h) => !level.hosts.includes(h.upstream))
      .map(fmt)
      .join(', ');
    return `${slow} over p95 ${e.thresholdP95Ms} ms or ${e.baselineFactor}× baseline for ${e.holdMs} ms${others ? `, while ${others}` : ''}`;
  }
}

function sameLevel(a: Level, b: Level): boolean {
  return a.kind === b.kind && a.hosts.length === b.hosts.length && a.hosts.every((h, i) => h === b.hosts[i]);
}
