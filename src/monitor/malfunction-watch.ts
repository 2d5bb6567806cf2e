import type { SiteStats, UpstreamStats } from '../shared/contracts.ts';
import { malfunctionDetection, type Detection } from './detection.ts';
import { attributeErrors, failingKinds, KindHistory, type ErrorAttribution, type Replay } from './error-attribution.ts';
import type { ProbeResult } from './http-probe.ts';
import { MalfunctionDetector, type TrafficWindow } from './malfunction-detector.ts';

export interface MalfunctionWatchTarget {
  site: string;
  host: string;
  /** The primary's upstream as the director names it (`127.0.1.1:3000`). */
  upstream: string;
}

/** How many windows of per-kind history are kept: enough to see what a kind did before its errors began. */
const HISTORY_WINDOWS = 3;

/**
 * Runs a MalfunctionDetector against one site's current primary: every director
 * stats snapshot (the primary's upstream: 5xx and connection errors of real
 * traffic over the site's `health.malfunction.window`) and every health probe
 * answer (content check: an answer the site's probe accepts, http-probe.ts).
 * Calls `onMalfunction` once, with the evidence, when either source raises; a new
 * primary gets a new watch, so its window starts empty.
 *
 * What the rate counts: load answers (429, 503 with Retry-After: load-signal.ts)
 * are neither errors nor good answers, so they are left out; so are the kinds of
 * request the controller found to fail because of the request (`excuse`), until
 * such a kind has gone a whole window without an error. Beside the detector the
 * watch keeps the per-kind history (error-attribution.ts) that tells the
 * controller whose the errors of a raised window are (`attribute`).
 */
export class MalfunctionWatch {
  private readonly detector: MalfunctionDetector;
  private readonly history: KindHistory;
  private readonly now: () => number;
  private readonly excused = new Set<string>();
  private fired = false;
  private stopped = false;
  /** The traffic window that raised, until the watch is re-armed. */
  private raisedWindow: TrafficWindow | null = null;

  constructor(
    readonly target: MalfunctionWatchTarget,
    private readonly cfg: { errorRate: number; windowMs: number; minRequests?: number; now?: () => number },
    private readonly lastHealthyAt: () => number,
    private readonly onMalfunction: (d: Detection) => void,
  ) {
    this.now = cfg.now ?? Date.now;
    this.detector = new MalfunctionDetector({
      errorRate: cfg.errorRate,
      windowMs: cfg.windowMs,
      minRequests: cfg.minRequests,
      now: this.now,
      countConnErrors: true,
    });
    this.history = new KindHistory(cfg.windowMs * HISTORY_WINDOWS);
  }

  /** One `GET /v1/stats` snapshot (all sites); a site or upstream not in it is skipped (no traffic seen yet). */
  observeStats(stats: readonly SiteStats[]): void {
    if (this.stopped) return;
    const u = stats.find((s) => s.site === this.target.site)?.upstreams.find((x) => x.upstream === this.target.upstream);
    if (!u) return;
    this.history.push(this.now(), u.kinds);
    this.forgiveQuietKinds();
    if (this.fired) return;
    const d = this.detector.observeStats(this.counted(u));
    if (d?.kind === 'malfunction') {
      this.raisedWindow = d.source === 'traffic' ? d.evidence : null;
      this.fire(malfunctionDetection(d, this.lastHealthyAt()));
    }
  }

  observeProbe(r: ProbeResult): void {
    if (this.fired || this.stopped) return;
    const d = this.detector.observeProbe(r);
    if (d?.kind === 'malfunction') this.fire(malfunctionDetection(d, this.lastHealthyAt()));
  }

  /** The last full window's figures (for status and tests), or null until one is full. */
  window() {
    return this.detector.window();
  }

  /**
   * The failed requests of the raised window's failing kinds that may be sent
   * again (GET and HEAD without a body, as the director kept them): at most
   * `perKind` of each of the `kinds` kinds with the most errors.
   */
  replayable(kinds = 2, perKind = 2): { kind: string; requests: string[] }[] {
    if (!this.raisedWindow) return [];
    return failingKinds(this.raisedWindow, this.history)
      .map((k) => ({ kind: k.kind, requests: [...new Set(this.history.samples(k.kind))].slice(-perKind) }))
      .filter((k) => k.requests.length > 0)
      .slice(0, kinds);
  }

  /** Whose the raised traffic window's errors are (error-attribution.ts); null when the watch raised on probes, or not at all. */
  attribute(probeFailing: string | null, replays: Replay[] = []): ErrorAttribution | null {
    if (!this.raisedWindow) return null;
    return attributeErrors({ host: this.target.host, window: this.raisedWindow, history: this.history, probeFailing, replays });
  }

  /**
   * These kinds fail because of the request, not the host: their answers leave the
   * rate, the window starts again, and the watch is armed again (it raises once
   * more only on what is left).
   */
  excuse(kinds: readonly string[]): void {
    for (const k of kinds) this.excused.add(k);
    this.rearm();
  }

  /** Kinds whose errors the rate leaves out now. */
  get excusedKinds(): string[] {
    return [...this.excused];
  }

  /** Armed again, with a new window (after a finding the controller did not act on). */
  rearm(): void {
    this.fired = false;
    this.raisedWindow = null;
    this.detector.restartTraffic();
  }

  stop(): void {
    this.stopped = true;
  }

  /** The counters the detector judges: without load answers and excused kinds. */
  private counted(u: UpstreamStats): Pick<UpstreamStats, 'upstream' | 'requests' | 'errors5xx' | 'connErrors'> {
    let requests = u.requests - (u.shed ?? 0);
    let errors5xx = u.errors5xx - (u.shed5xx ?? 0);
    if (this.excused.size > 0) {
      for (const k of u.kinds ?? []) {
        if (!this.excused.has(k.kind)) continue;
        requests -= k.requests - k.shed;
        errors5xx -= k.errors;
      }
    }
    return { upstream: u.upstream, requests, errors5xx, connErrors: u.connErrors };
  }

  /** An excused kind that went a whole window without an error counts again (and the window starts again). */
  private forgiveQuietKinds(): void {
    if (this.excused.size === 0) return;
    const now = this.now();
    const since = this.history.startAt;
    if (since === null || since > now - this.cfg.windowMs) return;
    const last = this.history.between(now - this.cfg.windowMs, now);
    let changed = false;
    for (const k of this.excused) {
      if ((last.get(k)?.errors ?? 0) === 0) {
        this.excused.delete(k);
        changed = true;
      }
    }
    if (changed && !this.fired) this.detector.restartTraffic();
  }

  private fire(d: Detection): void {
    this.fired = true;
    this.onMalfunction(d);
  }
}
