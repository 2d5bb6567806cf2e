/**
 * Latency percentiles over a sliding window (default the last 10 s), at a fixed
 * cost per request: no allocation, one log(), one array increment.
 *
 * The window is a ring of one-second slots; each slot is a log-scale histogram
 * whose buckets grow by 8 %, from 10 µs to ~60 s (≈ 200 buckets). A percentile is
 * therefore exact to within one bucket (±4 %), which is what a detector comparing
 * p95 against a 300 ms threshold needs. Reading merges the live slots; reading is
 * rare (stats polls) so it may allocate.
 */

const MIN_MS = 0.01;
const GROWTH = 1.08;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(60_000 / MIN_MS) / LOG_GROWTH) + 1;

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const i = Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH) + 1;
  return i < BUCKETS ? i : BUCKETS - 1;
}

/** Representative value of a bucket: the geometric middle of its bounds. */
function valueOf(bucket: number): number {
  if (bucket === 0) return MIN_MS;
  return MIN_MS * Math.pow(GROWTH, bucket - 0.5);
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  count: number;
}

export class LatencyWindow {
  private readonly slots: Uint32Array[];
  /** The second (of `now()`) each slot currently holds; -1 = empty. */
  private readonly slotSecond: Float64Array;

  /**
   * @param windowSeconds length of the window. @default 10
   * @param now clock in ms (monotonic); injectable for tests.
   */
  constructor(
    private readonly windowSeconds = 10,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.slots = Array.from({ length: windowSeconds }, () => new Uint32Array(BUCKETS));
    this.slotSecond = new Float64Array(windowSeconds).fill(-1);
  }

  record(ms: number): void {
    const sec = Math.floor(this.now() / 1000);
    const i = sec % this.windowSeconds;
    const slot = this.slots[i]!;
    if (this.slotSecond[i] !== sec) {
      slot.fill(0);
      this.slotSecond[i] = sec;
    }
    slot[bucketOf(ms)]!++;
  }

  /**
   * Percentiles over the last `lastSeconds` slots (the current, partial one
   * included), so over between `lastSeconds − 1` and `lastSeconds` seconds of
   * traffic. @default the whole window
   */
  percentiles(lastSeconds = this.windowSeconds): Percentiles {
    const span = Math.max(1, Math.min(this.windowSeconds, Math.floor(lastSeconds)));
    const sec = Math.floor(this.now() / 1000);
    const merged = new Float64Array(BUCKETS);
    let count = 0;
    for (let s = 0; s < this.windowSeconds; s++) {
      const age = sec - this.slotSecond[s]!;
      if (this.slotSecond[s]! < 0 || age < 0 || age >= span) continue;
      const slot = this.slots[s]!;
      for (let b = 0; b < BUCKETS; b++) {
        const n = slot[b]!;
        if (n !== 0) {
          merged[b]! += n;
          count += n;
        }
      }
    }
    if (count === 0) return { p50: 0, p95: 0, p99: 0, count: 0 };
    return { p50: round(at(merged, count, 0.5)), p95: round(at(merged, count, 0.95)), p99: round(at(merged, count, 0.99)), count };
  }
}

function at(merged: Float64Array, count: number, q: number): number {
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (let b = 0; b < merged.length; b++) {
    seen += merged[b]!;
    if (seen >= rank) return valueOf(b);
  }
  return valueOf(merged.length - 1);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
