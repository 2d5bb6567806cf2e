import type { SiteStats } from '../shared/contracts.ts';
import { background } from '../shared/background.ts';

/** How often the director's passive statistics are read. */
export const DIRECTOR_STATS_EVERY_MS = 500;

/**
 * `bySite`: the same snapshot by site, built once per poll for every listener (each
 * watch reads its own site's entry; with many sites, a search of the list per watch, or
 * a map per listener, costs sites² or sites × listeners per poll).
 */
export type DirectorStatsListener = (stats: SiteStats[], at: number, bySite: ReadonlyMap<string, SiteStats>) => void;

/**
 * Polls the director's `GET /v1/stats` every `everyMs` and hands each snapshot to
 * its listeners (the malfunction and slowdown detectors read real traffic from it).
 *
 * Contract: `at` is the controller's clock when the answer arrived; listeners are
 * called in subscription order, synchronously, and a listener that throws does not
 * stop the others. A director that does not answer gives no snapshot (listeners
 * see a gap, never an empty list that would read as "no traffic"). Polls never
 * overlap: a slow answer delays the next one.
 */
export class DirectorStatsFeed {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;
  private readonly listeners: DirectorStatsListener[] = [];
  /** The newest snapshot and when it arrived; null until the director first answered. */
  latest: { stats: SiteStats[]; at: number } | null = null;

  constructor(
    private readonly fetchStats: () => Promise<{ sites: SiteStats[] }>,
    private readonly onListenerError: (e: Error) => void,
    private readonly everyMs = DIRECTOR_STATS_EVERY_MS,
  ) {}

  subscribe(listener: DirectorStatsListener): void {
    this.listeners.push(listener);
  }

  start(): void {
    if (this.timer) return;
    this.stopped = false;
    this.timer = setInterval(() => background(this.poll()), this.everyMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One poll now (also what the timer runs). */
  async poll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    let stats: SiteStats[];
    try {
      stats = (await this.fetchStats()).sites;
    } catch {
      return;
    } finally {
      this.running = false;
    }
    if (!Array.isArray(stats) || this.stopped) return;
    const at = Date.now();
    this.latest = { stats, at };
    const bySite = new Map(stats.map((s) => [s.site, s]));
    for (const l of this.listeners) {
      try {
        l(stats, at, bySite);
      } catch (e) {
        this.onListenerError(e as Error);
      }
    }
  }
}
