import type { SiteStats, SyncStats, UpstreamStats } from '../shared/contracts.ts';
import { LatencyWindow, bucketOf } from './latency-window.ts';
import { RequestKinds } from './request-kinds.ts';
import { RECENT_LATENCY_MS, RECENT_LATENCY_SLOT_MS } from '../shared/contracts.ts';

/**
 * Passive statistics, per site and per upstream, kept on the request path: what
 * the controller's detectors read (`GET /v1/stats`) to see errors, refused
 * connections and slowness without probing. Counters are cumulative since the
 * director started; latency is over a sliding window of the last ~10 s.
 *
 * Recording costs a few increments and no allocation; status codes are counted in
 * a fixed array (100..599) so that /metrics can report them per code.
 */
export class UpstreamCounters {
  requests = 0;
  errors5xx = 0;
  connErrors = 0;
  lastConnErrorAt: number | null = null;
  /** Requests sent and not answered to the client yet (a held sync answer counts). */
  inflight = 0;
  /** Load answers (429, 503 with Retry-After: src/monitor/load-signal.ts); `shed5xx` the 503s among them. */
  shed = 0;
  shed5xx = 0;
  /** Responses by status code; index = code - 100. */
  readonly byStatus = new Uint32Array(500);
  readonly latency = new LatencyWindow();
  /** The last second, in quarter-second slots: `recentLatencyMs`, what the slowdown detector judges. */
  readonly recent = new LatencyWindow(RECENT_LATENCY_MS / 1000, undefined, RECENT_LATENCY_SLOT_MS);
  /** The same answers by kind of request (request-kinds.ts). */
  readonly kinds = new RequestKinds();

  constructor(readonly upstream: string) {}

  /** A response was received (any status) and fully relayed, or the relay failed mid-body. `shed`: a load answer. */
  recordResponse(status: number, ms: number, shed = false): void {
    this.requests++;
    if (status >= 500) this.errors5xx++;
    if (shed) {
      this.shed++;
      if (status >= 500) this.shed5xx++;
    }
    if (status >= 100 && status < 600) this.byStatus[status - 100]!++;
    const bucket = bucketOf(ms);
    this.latency.recordBucket(bucket);
    this.recent.recordBucket(bucket);
  }

  /** The upstream refused, reset or timed out a connection (before or after the request was sent). */
  recordConnError(): void {
    this.requests++;
    this.connErrors++;
    this.lastConnErrorAt = Date.now();
  }

  snapshot(): UpstreamStats {
    return {
      upstream: this.upstream,
      requests: this.requests,
      errors5xx: this.errors5xx,
      connErrors: this.connErrors,
      lastConnErrorAt: this.lastConnErrorAt,
      latencyMs: this.latency.percentiles(),
      recentLatencyMs: this.recent.percentiles(),
      inflight: this.inflight,
      shed: this.shed,
      shed5xx: this.shed5xx,
      kinds: this.kinds.snapshot(),
    };
  }
}

/**
 * What happened to requests the director could not simply forward. These extend
 * the `SiteStats` contract (which names `held` and `heldTimedOut`).
 */
export class SiteCounters {
  /** Requests that entered the hold queue (a request held twice counts twice). */
  held = 0;
  /** Held requests sent on after a route arrived. */
  released = 0;
  /** Held requests answered 503 because the hold timed out. */
  heldTimedOut = 0;
  /** Requests answered 503 at once because the hold queue was full. */
  holdRejected = 0;
  /** Idempotent requests re-sent after their connection broke once they were sent. */
  retried = 0;
  /** Modifying requests whose connection broke after they were sent: 503 US_OUTCOME_UNKNOWN. */
  outcomeUnknown = 0;
  /** Reads a reader answered 421 (it does not hold their data), sent on to the primary. */
  misdirected = 0;
  readonly upstreams = new Map<string, UpstreamCounters>();
  readonly sync = new SyncCounters();

  upstream(name: string): UpstreamCounters {
    let u = this.upstreams.get(name);
    if (u === undefined) {
      u = new UpstreamCounters(name);
      this.upstreams.set(name, u);
    }
    return u;
  }
}

/** Sync mode: answers held for the replica's confirmation, and how they ended. See contracts' SyncStats. */
export class SyncCounters {
  waits = 0;
  degraded = 0;
  timeouts = 0;
  unreachable = 0;
  readonly latency = new LatencyWindow();

  snapshot(): SyncStats {
    return { waits: this.waits, degraded: this.degraded, timeouts: this.timeouts, unreachable: this.unreachable, latencyMs: this.latency.percentiles() };
  }
}

/** The `GET /v1/stats` entry of a site: the contract's fields plus the director's extra counters. */
export interface DirectorSiteStats extends SiteStats {
  /** Requests held right now. */
  holding: number;
  released: number;
  holdRejected: number;
  retried: number;
  outcomeUnknown: number;
  /** Reads a reader answered 421, sent on to the primary. */
  misdirected: number;
}

export function siteSnapshot(site: string, epoch: number, holding: number, c: SiteCounters): DirectorSiteStats {
  return {
    site,
    epoch,
    held: c.held,
    heldTimedOut: c.heldTimedOut,
    holding,
    released: c.released,
    holdRejected: c.holdRejected,
    retried: c.retried,
    outcomeUnknown: c.outcomeUnknown,
    misdirected: c.misdirected,
    upstreams: [...c.upstreams.values()].map((u) => u.snapshot()),
    sync: c.sync.snapshot(),
  };
}
