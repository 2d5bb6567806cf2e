import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SiteCounters } from './upstream-stats.ts';

/**
 * `GET /metrics` of the director (Prometheus text format), on its admin listener.
 *
 * Counters are not incremented on the request path: they are read, at scrape
 * time, from the SiteCounters the proxy keeps anyway (`collect()`), so a request
 * pays nothing for them. Only the duration histogram is observed per request,
 * through a label child cached per (site, upstream).
 *
 * Each Director has its own Registry, so several can live in one process (tests).
 */
export class DirectorMetrics {
  readonly registry = new Registry();
  readonly duration: Histogram<'site' | 'upstream'>;
  /** Sync mode: how long answers were held for the replica's confirmation, by outcome. */
  readonly syncWait: Histogram<'site' | 'outcome'>;

  constructor(sites: () => Iterable<[string, SiteCounters, number]>) {
    const registers = [this.registry];
    new Counter({
      name: 'understudy_director_requests_total',
      help: 'Responses relayed, by site, upstream and HTTP status code (code="conn_error": connection refused or broken).',
      labelNames: ['site', 'upstream', 'code'] as const,
      registers,
      collect() {
        this.reset();
        for (const [site, c] of sites()) {
          for (const u of c.upstreams.values()) {
            for (let i = 0; i < u.byStatus.length; i++) {
              const n = u.byStatus[i]!;
              if (n !== 0) this.inc({ site, upstream: u.upstream, code: String(i + 100) }, n);
            }
            if (u.connErrors !== 0) this.inc({ site, upstream: u.upstream, code: 'conn_error' }, u.connErrors);
          }
        }
      },
    });
    new Counter({
      name: 'understudy_director_conn_errors_total',
      help: 'Connections to an upstream refused, reset or timed out.',
      labelNames: ['site', 'upstream'] as const,
      registers,
      collect() {
        this.reset();
        for (const [site, c] of sites()) {
          for (const u of c.upstreams.values()) this.inc({ site, upstream: u.upstream }, u.connErrors);
        }
      },
    });
    const siteCounter = (name: string, help: string, pick: (c: SiteCounters) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['site'] as const,
        registers,
        collect() {
          this.reset();
          for (const [site, c] of sites()) this.inc({ site }, pick(c));
        },
      });
    siteCounter('understudy_director_held_total', 'Requests held (no primary, or their connection was refused).', (c) => c.held);
    siteCounter('understudy_director_released_total', 'Held requests sent on when a route arrived.', (c) => c.released);
    siteCounter('understudy_director_held_timed_out_total', 'Held requests answered 503 when their hold timed out.', (c) => c.heldTimedOut);
    siteCounter('understudy_director_hold_rejected_total', 'Requests answered 503 because the hold queue was full.', (c) => c.holdRejected);
    siteCounter('understudy_director_retried_total', 'Idempotent requests re-sent after their connection broke.', (c) => c.retried);
    siteCounter('understudy_director_outcome_unknown_total', 'Modifying requests answered 503 US_OUTCOME_UNKNOWN.', (c) => c.outcomeUnknown);
    siteCounter('understudy_director_sync_waits_total', 'Sync mode: write answers held for the replica to confirm.', (c) => c.sync.waits);
    siteCounter('understudy_director_sync_degraded_total', 'Sync mode: write answers released unconfirmed (onReplicaLost: degrade).', (c) => c.sync.degraded);
    siteCounter(
      'understudy_director_sync_timeouts_total',
      'Sync mode: write answers replaced by 503 US_SYNC_TIMEOUT (onReplicaLost: strict).',
      (c) => c.sync.timeouts,
    );
    siteCounter(
      'understudy_director_sync_unreachable_total',
      'Sync mode: barriers that failed because the storage processor could not be asked.',
      (c) => c.sync.unreachable,
    );
    new Gauge({
      name: 'understudy_director_inflight',
      help: 'Requests sent to an upstream and not answered to the client yet.',
      labelNames: ['site', 'upstream'] as const,
      registers,
      collect() {
        this.reset();
        for (const [site, c] of sites()) for (const u of c.upstreams.values()) this.set({ site, upstream: u.upstream }, u.inflight);
      },
    });
    new Gauge({
      name: 'understudy_director_holding',
      help: 'Requests held right now.',
      labelNames: ['site'] as const,
      registers,
      collect() {
        this.reset();
        for (const [site, , holding] of sites()) this.set({ site }, holding);
      },
    });
    this.duration = new Histogram({
      name: 'understudy_director_request_duration_seconds',
      help: 'Time from sending a request to an upstream to the end of its response.',
      labelNames: ['site', 'upstream'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.syncWait = new Histogram({
      name: 'understudy_director_sync_wait_seconds',
      help: 'Sync mode: time a write answer was held for the sync barrier, by outcome (sync, degraded, timeout, unreachable).',
      labelNames: ['site', 'outcome'] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
