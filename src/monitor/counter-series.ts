/**
 * Successive snapshots of cumulative counters (the director's per-upstream
 * `requests`, `errors5xx`, `connErrors`), kept long enough to take differences
 * over a window. Totals since the director started say nothing about now; the
 * difference between two snapshots is the traffic between them.
 *
 * A counter that goes down means the director restarted (its counters start at 0):
 * the series starts again, since no difference across the restart is meaningful.
 */
export interface CounterSample {
  /** When the snapshot was taken (the detector's clock, ms). */
  at: number;
  requests: number;
  errors5xx: number;
  connErrors: number;
}

/** Traffic between two samples. `answered` excludes connection errors (they have no status). */
export interface CounterDelta {
  from: number;
  to: number;
  requests: number;
  answered: number;
  errors5xx: number;
  connErrors: number;
}

export class CounterSeries {
  private samples: CounterSample[] = [];

  /** @param keepMs how far back samples are kept (at least the longest window asked for). */
  constructor(private readonly keepMs: number) {}

  /** Appends a snapshot. Returns `false` (and restarts the series) when a counter went down or time went back. */
  push(s: CounterSample): boolean {
    const last = this.samples[this.samples.length - 1];
    let continuous = true;
    if (last && (s.at < last.at || s.requests < last.requests || s.errors5xx < last.errors5xx || s.connErrors < last.connErrors)) {
      this.samples = [];
      continuous = false;
    }
    this.samples.push({ at: s.at, requests: s.requests, errors5xx: s.errors5xx, connErrors: s.connErrors });
    // Keep one sample older than keepMs: it is the start edge of a full window.
    const horizon = s.at - this.keepMs;
    let drop = 0;
    while (drop + 1 < this.samples.length && this.samples[drop + 1]!.at <= horizon) drop++;
    if (drop > 0) this.samples.splice(0, drop);
    return continuous;
  }

  get latest(): CounterSample | undefined {
    return this.samples[this.samples.length - 1];
  }

  /** The newest sample taken at or before `t`, if any. */
  atOrBefore(t: number): CounterSample | undefined {
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (this.samples[i]!.at <= t) return this.samples[i];
    }
    return undefined;
  }

  clear(): void {
    this.samples = [];
  }
}

export function delta(a: CounterSample, b: CounterSample): CounterDelta {
  const requests = b.requests - a.requests;
  const connErrors = b.connErrors - a.connErrors;
  return { from: a.at, to: b.at, requests, answered: requests - connErrors, errors5xx: b.errors5xx - a.errors5xx, connErrors };
}
