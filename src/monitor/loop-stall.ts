/**
 * When this process's own event loop was held up. A probe's timeout is a timer of this
 * process: if the loop was busy past the deadline, the timer fires first when the loop
 * is free again, before the answer that may be waiting in the socket is read. Such a
 * timeout says the controller was slow, not the app, and must not count as the app's
 * hang (one host carries many sites: a false hang fences them all).
 *
 * A timer ticks every `tickMs`; a tick that comes more than `slackMs` late records a
 * stall (the late part). Stalls are kept for `keepMs`. The timer does not keep the
 * process alive.
 */
/** What a site monitor asks of the clock. */
export interface StallClock {
  start(): void;
  stalledDuring(from: number, to: number): number;
}

export class LoopStallClock implements StallClock {
  private timer: NodeJS.Timeout | null = null;
  private last = 0;
  /** [from, to] in Date.now() time, oldest first. */
  private readonly stalls: [number, number][] = [];

  constructor(
    private readonly tickMs = 20,
    private readonly slackMs = 30,
    private readonly keepMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.last = this.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** A tick (the timer's, or a test's). */
  tick(): void {
    const t = this.now();
    if (t - this.last > this.tickMs + this.slackMs) this.stalls.push([this.last + this.tickMs, t]);
    this.last = t;
    while (this.stalls.length > 0 && this.stalls[0]![1] < t - this.keepMs) this.stalls.shift();
  }

  /**
   * Milliseconds of [from, to] during which the loop was held up, the time up to now
   * included (a stall still going on when asked: the caller's own callback came late).
   */
  stalledDuring(from: number, to: number): number {
    let ms = 0;
    for (const [a, b] of this.stalls) ms += Math.max(0, Math.min(b, to) - Math.max(a, from));
    const current = this.now();
    if (this.timer !== null && current - this.last > this.tickMs + this.slackMs)
      ms += Math.max(0, Math.min(current, to) - Math.max(this.last + this.tickMs, from));
    return ms;
  }
}

/** The process's clock, shared by every site monitor; started by the first monitor. */
export const loopStalls = new LoopStallClock();
