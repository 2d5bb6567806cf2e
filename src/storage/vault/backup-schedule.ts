/**
 * When each site's next scheduled restore point is due (pure: the clock is given).
 *
 * Contract: while a site's primary is here and its points succeed, a point STARTS at
 * most `everyMs + tickMs` after the previous one started, so the newest point is never
 * older than `everyMs + tickMs + (time to take a point)`. Points of one site never
 * overlap; sites never wait for each other.
 *
 * Why it is measured from the start of the previous attempt, with a tick well below
 * `everyMs`: the earlier scheduler compared
 * `now - takenAt < everyMs` on a 1 s tick, where `takenAt` was stamped a few ms AFTER
 * the tick that started the point. With `every: 1s` the next tick then found 999.x ms
 * and skipped, so points came every 2 s (measured: 14 points in 28 s, gaps 1.78-2.10 s);
 * one global "running" flag also made every site wait for the slowest, and backups
 * queued behind verifications of the same site.
 *
 * A failed attempt counts as a start: the next one comes `everyMs` later, not at every tick.
 */
export class BackupSchedule {
  private readonly lastStart = new Map<string, number>();
  /** Attempts in progress per site (a backup-now may queue behind a scheduled one). */
  private readonly running = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** True once the newest point's time is known (seeded from the vault, or a point was started here). */
  knows(site: string): boolean {
    return this.lastStart.has(site);
  }

  /** The vault's newest point of `site` (0 when it has none): the first point here is due `everyMs` after it. */
  seed(site: string, newestTakenAt: number): void {
    if (!this.lastStart.has(site)) this.lastStart.set(site, newestTakenAt);
  }

  /** Whether a point of `site` should start now. */
  due(site: string, everyMs: number): boolean {
    if (this.isRunning(site)) return false;
    const last = this.lastStart.get(site);
    return last !== undefined && this.now() - last >= everyMs;
  }

  /** Marks the start of an attempt (scheduled or on demand) and returns its time. */
  started(site: string): number {
    const t = this.now();
    this.running.set(site, (this.running.get(site) ?? 0) + 1);
    this.lastStart.set(site, t);
    return t;
  }

  finished(site: string): void {
    const n = (this.running.get(site) ?? 1) - 1;
    if (n > 0) this.running.set(site, n);
    else this.running.delete(site);
  }

  isRunning(site: string): boolean {
    return (this.running.get(site) ?? 0) > 0;
  }

  /** The volume is no longer primary here: when it is again, the vault is asked anew. */
  forget(site: string): void {
    if (!this.isRunning(site)) this.lastStart.delete(site);
  }
}

/** The scheduler's tick for the given backup intervals: a tenth of the shortest, between 50 ms and `maxMs`. */
export function backupTickFor(everyMs: number[], maxMs: number): number {
  const shortest = everyMs.length > 0 ? Math.min(...everyMs) : maxMs;
  return Math.max(50, Math.min(maxMs, Math.floor(shortest / 10)));
}
