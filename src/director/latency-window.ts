/**
 * Latency percentiles over a sliding window (default the last 10 s), at a fixed
 * cost per request: no allocation, one log(), one array increment.
 *
 * The window is a ring of slots (one second each by default; the recent latency the
 * slowdown detector judges uses quarter-second slots); each slot is a log-scale histogram
 * whose buckets grow by 8 %, from 10 µs to ~60 s (≈ 200 buckets). A percentile is
 * therefore exact to within one bucket (±4 %), which is what a detector comparing
 * p95 against a 300 ms threshold needs. Reading merges the live slots; reading is
 * rare (stats polls) so it may allocate.
 */

const MIN_MS = 0.01;
const GROWTH = 1.08;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(60_000 / MIN_MS) / LOG_GROWTH) + 1;

/** The histogram bucket of a latency: computed once per request when it goes into two windows (`recordBucket`). */
export function bucketOf(ms: number): number {
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
  /** The slot number (`now() / slotMs`, floored) each slot currently holds; -1 = empty. */
  private readonly slotNumber: Float64Array;
  private readonly count: number;

  /**
   * @param windowSeconds length of the window. @default 10
   * @param now clock in ms (monotonic); injectable for tests.
   * @param slotMs length of one slot: what a percentile over the last N seconds may
   *   include of older traffic. @default 1000
   */
  constructor(
    windowSeconds = 10,
    private readonly now: () => number = () => performance.now(),
    private readonly slotMs = 1000,
  ) {
    this.count = Math.max(1, Math.round((windowSeconds * 1000) / slotMs));
    this.slots = Array.from({ length: this.count }, () => new Uint32Array(BUCKETS));
    this.slotNumber = new Float64Array(this.count).fill(-1);
  }

  record(ms: number): void {
    this.recordBucket(bucketOf(ms));
  }

  /** `record` of a latency whose bucket is known (`bucketOf`). */
  recordBucket(bucket: number): void {
    const n = Math.floor(this.now() / this.slotMs);
    const i = n % this.count;
    const slot = this.slots[i]!;
    if (this.slotNumber[i] !== n) {
      slot.fill(0);
      this.slotNumber[i] = n;
    }
    slot[bucket]!++;
  }

  /**
   * Percentiles over the slots of the last `lastSeconds` (the current, partial one
   * included), so over between `lastSeconds − slotMs` and `lastSeconds` of traffic.
   * @default the whole window
   */
  percentiles(lastSeconds = (this.count * this.slotMs) / 1000): Percentiles {
    const span = Math.max(1, Math.min(this.count, Math.floor((lastSeconds * 1000) / this.slotMs)));
    const cur = Math.floor(this.now() / this.slotMs);
    const merged = new Float64Array(BUCKETS);
    let count = 0;
    for (let s = 0; s < this.count; s++) {
      const age = cur - this.slotNumber[s]!;
      if (this.slotNumber[s]! < 0 || age < 0 || age >= span) continue;
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
