import type { SiteStats } from '../shared/contracts.ts';
import { malfunctionDetection, type Detection } from './detection.ts';
import type { ProbeResult } from './http-probe.ts';
import { MalfunctionDetector } from './malfunction-detector.ts';

export interface MalfunctionWatchTarget {
  site: string;
  host: string;
  /** The primary's upstream as the director names it (`127.0.1.1:3000`). */
  upstream: string;
}

/**
 * Runs a MalfunctionDetector against one site's current primary: every director
 * stats snapshot (the primary's upstream: 5xx and connection errors of real
 * traffic over the site's `health.malfunction.window`) and every health probe
 * answer (content check: an answer the site's probe accepts, http-probe.ts).
 * Calls `onMalfunction` once, with the evidence, when either source raises; a new
 * primary gets a new watch, so its window starts empty.
 */
export class MalfunctionWatch {
  private readonly detector: MalfunctionDetector;
  private fired = false;
  private stopped = false;

  constructor(
    readonly target: MalfunctionWatchTarget,
    cfg: { errorRate: number; windowMs: number; minRequests?: number },
    private readonly lastHealthyAt: () => number,
    private readonly onMalfunction: (d: Detection) => void,
  ) {
    this.detector = new MalfunctionDetector({
      errorRate: cfg.errorRate, windowMs: cfg.windowMs, minRequests: cfg.minRequests,
      countConnErrors: true,
    });
  }

  /** One `GET /v1/stats` snapshot (all sites); a site or upstream not in it is skipped (no traffic seen yet). */
  observeStats(stats: readonly SiteStats[]): void {
    if (this.fired || this.stopped) return;
    const u = stats.find((s) => s.site === this.target.site)?.upstreams.find((x) => x.upstream === this.target.upstream);
    if (!u) return;
    const d = this.detector.observeStats(u);
    if (d?.kind === 'malfunction') this.fire(malfunctionDetection(d, this.lastHealthyAt()));
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

  stop(): void {
    this.stopped = true;
  }

  private fire(d: Detection): void {
    this.fired = true;
    this.onMalfunction(d);
  }
}
