import type { UpstreamStats } from '../shared/contracts.ts';
import { CounterSeries, delta, type CounterDelta } from './counter-series.ts';
import { classifyProbeError, probeFailed, type ProbeObservation } from './probe-evidence.ts';

export interface MalfunctionDetectorOptions {
  /** Share of answered requests that are 5xx at or above which the app malfunctions (`health.malfunction.errorRate`). */
  errorRate: number;
  /** The window the rate must hold over (`health.malfunction.windowMs`). */
  windowMs: number;
  /** Fewer answered requests than this in the window prove nothing. @default 20 */
  minRequests?: number;
  /**
   * The window is cut into this many slices; every slice must have answered
   * requests and a rate of at least `sliceFloor × errorRate`. This is what makes a
   * burst shorter than the window harmless even when it alone lifts the window's
   * average over the threshold. Polling must be at least as frequent as a slice
   * (windowMs / slices) for all slices to exist; with sparser polls, slices that
   * fall between the same two snapshots merge. @default 5
   */
  slices?: number;
  /** @default 0.5 */
  sliceFloor?: number;
  /**
   * Count the upstream's connection errors (refused, reset, timed out) as errors
   * too: they are failures the clients saw. Then the rate is (5xx + connErrors) /
   * requests; else connection errors are left to the hang detector and the rate is
   * 5xx / answered. @default false
   */
  countConnErrors?: boolean;
  /** Wrong probe answers in a row before a probe malfunction is raised. @default 2 */
  probeFall?: number;
  /** Right probe answers in a row before a probe malfunction is cleared. @default 2 */
  probeRise?: number;
  /** Clock (ms): stamps snapshots and decisions. @default Date.now */
  now?: () => number;
}

/** What the traffic of the primary did over the window ending at `to`. */
export interface TrafficWindow {
  upstream: string;
  from: number;
  to: number;
  windowMs: number;
  requests: number;
  answered: number;
  errors5xx: number;
  connErrors: number;
  /** The errors the rate counts: errors5xx, plus connErrors with `countConnErrors`. */
  errors: number;
  /** What the rate divides by: `answered`, or `requests` with `countConnErrors`. */
  base: number;
  countConnErrors: boolean;
  /** errors / base; null when the base is 0. */
  rate: number | null;
  threshold: number;
  minRequests: number;
  slices: (CounterDelta & { rate: number | null })[];
  /** Every rule holds: rate ≥ threshold, base ≥ minRequests, every slice has traffic at ≥ sliceFloor × threshold. */
  sustained: boolean;
}

export interface ProbeAnswer {
  at: number;
  error?: string;
  status?: number;
  /** Why this answer is wrong (the probe's error). */
  wrong: string;
}

export type MalfunctionDecision =
  | { kind: 'malfunction'; source: 'traffic'; at: number; reason: string; evidence: TrafficWindow }
  | { kind: 'malfunction'; source: 'probe'; at: number; reason: string; evidence: { probes: ProbeAnswer[] } }
  | { kind: 'malfunction-cleared'; source: 'traffic'; at: number; reason: string; evidence: TrafficWindow }
  | { kind: 'malfunction-cleared'; source: 'probe'; at: number; reason: string; evidence: { goodProbes: number } };

/** A probe as MalfunctionDetector reads it: HttpProbe's ProbeResult fits. */
export type ProbeLike = ProbeObservation & { status?: number };

/**
 * Detects an app that is up but answers wrongly, from two sources with their own hysteresis:
 *
 * - Real traffic: successive director snapshots (`GET /v1/stats`) of the primary's
 *   upstream. The rate is Δerrors5xx / Δanswered between the newest snapshot and the
 *   newest one at least `windowMs` older, so a window is judged only once it is full.
 *   Connection errors are excluded (they have no status; refused/timeouts are
 *   HangDetector's) but reported, unless `countConnErrors` makes them errors too
 *   (then Δ(5xx + connErrors) / Δrequests). Raised once when the window is `sustained`; cleared
 *   once a full window's rate is below half the threshold.
 * - Probe content: `probeFall` probes in a row that got a wrong answer (a status or
 *   body the site's probe does not accept, http-probe.ts). Who answered is never read
 *   from the answer: the probe calls the primary's own address.
 */
export class MalfunctionDetector {
  private readonly now: () => number;
  private readonly minRequests: number;
  private readonly slices: number;
  private readonly sliceFloor: number;
  private readonly probeFall: number;
  private readonly probeRise: number;
  private readonly series: CounterSeries;
  private upstream: string | null = null;
  private trafficRaised = false;
  private wrongProbes: ProbeAnswer[] = [];
  private goodProbes = 0;
  private probeRaised = false;

  constructor(private readonly opts: MalfunctionDetectorOptions) {
    if (!(opts.errorRate > 0 && opts.errorRate <= 1)) throw new RangeError('MalfunctionDetector: errorRate must be in (0, 1]');
    if (!(opts.windowMs > 0)) throw new RangeError('MalfunctionDetector: windowMs must be > 0');
    this.now = opts.now ?? Date.now;
    this.minRequests = opts.minRequests ?? 20;
    this.slices = Math.max(1, Math.floor(opts.slices ?? 5));
    this.sliceFloor = opts.sliceFloor ?? 0.5;
    this.probeFall = opts.probeFall ?? 2;
    this.probeRise = opts.probeRise ?? 2;
    this.series = new CounterSeries(opts.windowMs);
  }

  /** Whether a malfunction is raised and not cleared, from either source. */
  get malfunctioning(): boolean {
    return this.trafficRaised || this.probeRaised;
  }

  /**
   * One director snapshot of the primary's upstream, taken now. A different
   * upstream (the primary moved) or counters that went down (director restarted)
   * start the window again.
   */
  observeStats(u: Pick<UpstreamStats, 'upstream' | 'requests' | 'errors5xx' | 'connErrors'>): MalfunctionDecision | null {
    const at = this.now();
    if (this.upstream !== u.upstream) {
      this.series.clear();
      this.trafficRaised = false;
      this.upstream = u.upstream;
    }
    this.series.push({ at, requests: u.requests, errors5xx: u.errors5xx, connErrors: u.connErrors });
    const w = this.window();
    if (!w) return null;
    if (!this.trafficRaised && w.sustained) {
      this.trafficRaised = true;
      return {
        kind: 'malfunction',
        source: 'traffic',
        at,
        evidence: w,
        reason: w.countConnErrors
          ? `error rate ${pct(w.rate)}: ${w.errors} of ${w.requests} requests failed (${w.errors5xx} 5xx, ${w.connErrors} connection errors) over ${w.to - w.from} ms (threshold ${pct(w.threshold)} over a ${w.windowMs} ms window, sustained in all ${w.slices.length} slices)`
          : `error rate ${pct(w.rate)}: ${w.errors5xx} of ${w.answered} answered requests were 5xx over ${w.to - w.from} ms (threshold ${pct(w.threshold)} over a ${w.windowMs} ms window, sustained in all ${w.slices.length} slices)`,
      };
    }
    if (this.trafficRaised && w.rate !== null && w.base >= this.minRequests && w.rate < w.threshold / 2) {
      this.trafficRaised = false;
      return { kind: 'malfunction-cleared', source: 'traffic', at, evidence: w, reason: `5xx rate down to ${pct(w.rate)} over ${w.to - w.from} ms` };
    }
    return null;
  }

  /** The traffic figures over the last full window, or null until a window is full. */
  window(): TrafficWindow | null {
    const end = this.series.latest;
    if (!end || this.upstream === null) return null;
    const start = this.series.atOrBefore(end.at - this.opts.windowMs);
    if (!start) return null;
    const total = delta(start, end);
    // Slice edges: the newest snapshot at or before each boundary; equal edges merge.
    const edges = [start];
    for (let k = 1; k < this.slices; k++) {
      const e = this.series.atOrBefore(end.at - this.opts.windowMs + (k * this.opts.windowMs) / this.slices)!;
      if (e.at !== edges[edges.length - 1]!.at) edges.push(e);
    }
    if (end.at !== edges[edges.length - 1]!.at) edges.push(end);
    const slices = [];
    for (let i = 1; i < edges.length; i++) {
      const d = delta(edges[i - 1]!, edges[i]!);
      slices.push({ ...d, rate: this.rateOf(d) });
    }
    const withConn = this.opts.countConnErrors === true;
    const base = withConn ? total.requests : total.answered;
    const errors = withConn ? total.errors5xx + total.connErrors : total.errors5xx;
    const rate = this.rateOf(total);
    const floor = this.opts.errorRate * this.sliceFloor;
    const sustained =
      rate !== null && base >= this.minRequests && rate >= this.opts.errorRate && slices.length > 0 && slices.every((s) => s.rate !== null && s.rate >= floor);
    return {
      upstream: this.upstream,
      from: total.from,
      to: total.to,
      windowMs: this.opts.windowMs,
      requests: total.requests,
      answered: total.answered,
      errors5xx: total.errors5xx,
      connErrors: total.connErrors,
      errors,
      base,
      countConnErrors: withConn,
      rate,
      threshold: this.opts.errorRate,
      minRequests: this.minRequests,
      slices,
      sustained,
    };
  }

  /** One health probe of the primary (HttpProbe's ProbeResult). Timeouts and refusals are not answers: ignored here. */
  observeProbe(p: ProbeLike): MalfunctionDecision | null {
    const wrong = this.wrongness(p);
    if (wrong === undefined) return null;
    const at = this.now();
    if (wrong === null) {
      this.wrongProbes = [];
      this.goodProbes++;
      if (this.probeRaised && this.goodProbes >= this.probeRise) {
        this.probeRaised = false;
        return {
          kind: 'malfunction-cleared',
          source: 'probe',
          at,
          reason: `${this.goodProbes} right probe answers in a row`,
          evidence: { goodProbes: this.goodProbes },
        };
      }
      return null;
    }
    this.goodProbes = 0;
    if (this.probeRaised) return null;
    this.wrongProbes.push({ at: p.at, error: p.error, status: p.status, wrong });
    if (this.wrongProbes.length < this.probeFall) return null;
    this.probeRaised = true;
    return {
      kind: 'malfunction',
      source: 'probe',
      at,
      reason: `${this.wrongProbes.length} probes in a row answered wrongly (${this.wrongProbes.map((w) => w.wrong).join(', ')})`,
      evidence: { probes: this.wrongProbes },
    };
  }

  /** Starts the traffic window again (the counters it is fed changed meaning): a malfunction needs a whole new window. */
  restartTraffic(): void {
    this.series.clear();
    this.trafficRaised = false;
  }

  reset(): void {
    this.series.clear();
    this.upstream = null;
    this.trafficRaised = false;
    this.wrongProbes = [];
    this.goodProbes = 0;
    this.probeRaised = false;
  }

  private rateOf(d: CounterDelta): number | null {
    if (this.opts.countConnErrors === true) return d.requests > 0 ? (d.errors5xx + d.connErrors) / d.requests : null;
    return d.answered > 0 ? d.errors5xx / d.answered : null;
  }

  /** null: a right answer; a string: why it is wrong; undefined: no answer at all (not this detector's evidence). */
  private wrongness(p: ProbeLike): string | null | undefined {
    if (probeFailed(p)) return classifyProbeError(p.error) === 'bad-answer' ? (p.error ?? 'bad answer') : undefined;
    return null;
  }
}

function pct(r: number | null): string {
  return r === null ? 'n/a' : `${Math.round(r * 1000) / 10} %`;
}
