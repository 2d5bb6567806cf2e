import client from 'prom-client';
import type { Controller } from '../controller/controller.ts';
import type { EventRecord, JournalEntry } from '../state/state-store.ts';

/** What /metrics reads besides the controller: the notifier's counters (src/notify/). */
export interface MetricsSources {
  notify?: () => { target: string; delivered: number; failedAttempts: number; givenUp: number; pending: number; failing: boolean }[];
}

const SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120];

/**
 * Prometheus metrics of the controller. State (sites, hosts, replication, queue) is
 * read when scraped; the figures the events carry (failover, detection, fence,
 * switchover hold, drill) are observed when the event or journal entry is written,
 * in this process — so histograms start empty when the controller starts, as
 * Prometheus counters do. Nothing here is on a hot path.
 */
export function createMetrics(controller: Controller, sources: MetricsSources = {}): client.Registry {
  const registry = new client.Registry();
  const registers = [registry];
  client.collectDefaultMetrics({ register: registry, prefix: 'understudy_controller_' });
  const states = ['starting', 'serving', 'degraded', 'failing-over', 'down'];
  new client.Gauge({
    name: 'understudy_site_state',
    help: '1 for the state each site is in',
    labelNames: ['site', 'state'],
    registers,
    async collect() {
      const st = await controller.status();
      for (const s of st.sites) for (const state of states) this.set({ site: s.name, state }, s.state === state ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'understudy_site_epoch',
    help: 'Current epoch of each site',
    labelNames: ['site'],
    registers,
    async collect() {
      for (const s of (await controller.status()).sites) this.set({ site: s.name }, s.epoch);
    },
  });
  new client.Gauge({
    name: 'understudy_replication_lag_ms',
    help: 'Age of the oldest change not yet on the replica',
    labelNames: ['site'],
    registers,
    async collect() {
      this.reset();
      for (const s of (await controller.status()).sites) if (s.replication.lagMs !== null) this.set({ site: s.name }, s.replication.lagMs);
    },
  });
  new client.Gauge({
    name: 'understudy_replication_streaming',
    help: "1 when the site's replication streams",
    labelNames: ['site'],
    registers,
    async collect() {
      this.reset();
      for (const s of (await controller.status()).sites) this.set({ site: s.name }, s.replication.state === 'streaming' ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'understudy_host_power',
    help: '1 when the host is powered on',
    labelNames: ['host'],
    registers,
    async collect() {
      for (const h of (await controller.status()).hosts) this.set({ host: h.name }, h.power === 'on' ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'understudy_host_trusted',
    help: '1 when the host is trusted to take a site (see status: trust)',
    labelNames: ['host'],
    registers,
    async collect() {
      for (const h of (await controller.status()).hosts) this.set({ host: h.name }, !h.trust || h.trust.state === 'trusted' ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'understudy_runbooks',
    help: 'Runbooks by kind and status',
    labelNames: ['kind', 'status'],
    registers,
    collect() {
      this.reset();
      for (const r of controller.store.listRunbooks()) this.inc({ kind: r.kind, status: r.status });
    },
  });

  // ---------------------------------------------------------------- the director's request counters
  // Read from the controller's latest director stats snapshot (every 500 ms): cumulative
  // since the director started (they restart from 0 with it, as counters do).
  const directorCounter = (name: string, help: string, field: string) =>
    new client.Gauge({
      name,
      help,
      labelNames: ['site'],
      registers,
      collect() {
        this.reset();
        for (const s of controller.latestDirectorStats?.stats ?? []) {
          const v = (s as unknown as Record<string, unknown>)[field];
          if (typeof v === 'number') this.set({ site: s.site }, v);
        }
      },
    });
  directorCounter('understudy_requests_held', 'Requests the director held (no primary routed, or their connection was refused), since it started', 'held');
  directorCounter('understudy_requests_held_timed_out', 'Held requests answered 503 when their hold timed out, since the director started', 'heldTimedOut');
  directorCounter('understudy_requests_retried', 'Idempotent requests the director re-sent after their connection broke, since it started', 'retried');
  directorCounter('understudy_requests_outcome_unknown', 'Modifying requests answered 503 US_OUTCOME_UNKNOWN, since the director started', 'outcomeUnknown');
  directorCounter('understudy_requests_holding', 'Requests held right now', 'holding');

  // ---------------------------------------------------------------- figures the events carry
  const failover = new client.Histogram({
    name: 'understudy_failover_seconds',
    help: 'Failover: from detection to serving again on the new primary',
    labelNames: ['site'],
    buckets: SECONDS,
    registers,
  });
  const detection = new client.Histogram({
    name: 'understudy_detection_seconds',
    help: 'Failover: from the last healthy probe to the detection of the failure',
    labelNames: ['site'],
    buckets: SECONDS,
    registers,
  });
  const lagAtFailure = new client.Gauge({
    name: 'understudy_failover_replication_lag_ms',
    help: 'Replication lag of the site when its last failover started (writes at risk in async mode)',
    labelNames: ['site'],
    registers,
  });
  const fence = new client.Histogram({
    name: 'understudy_fence_seconds',
    help: "Fence step: the old primary's relay off, confirmed",
    labelNames: ['site', 'kind'],
    buckets: SECONDS,
    registers,
  });
  const steps = new client.Histogram({
    name: 'understudy_runbook_step_seconds',
    help: 'Duration of each runbook step',
    labelNames: ['kind', 'step'],
    buckets: SECONDS,
    registers,
  });
  const held = new client.Histogram({
    name: 'understudy_switchover_held_seconds',
    help: 'Switchover: how long new requests were held',
    labelNames: ['site'],
    buckets: SECONDS,
    registers,
  });
  const events = new client.Counter({ name: 'understudy_events_total', help: 'Events recorded, by kind', labelNames: ['kind'], registers });
  const drills = new client.Counter({
    name: 'understudy_drills_total',
    help: 'Rehearsals (understudy drill), by result',
    labelNames: ['site', 'result'],
    registers,
  });
  const drillAge = new client.Gauge({
    name: 'understudy_drill_data_age_ms',
    help: 'Last rehearsal: at most how far the copy was behind the primary when taken',
    labelNames: ['site'],
    registers,
  });
  const drillTotal = new client.Histogram({
    name: 'understudy_drill_seconds',
    help: 'Rehearsal: from the copy to the smoke request answered',
    labelNames: ['site'],
    buckets: SECONDS,
    registers,
  });

  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  controller.store.onEvent((e: EventRecord) => {
    events.inc({ kind: e.kind });
    const site = e.site ?? '';
    if (e.kind === 'failover-complete') {
      const serving = num(e.data.servingAgainMs);
      const detected = num(e.data.detectionMs);
      const lag = num(e.data.replicationLagMsAtFailure);
      if (serving !== null) failover.observe({ site }, serving / 1000);
      if (detected !== null) detection.observe({ site }, detected / 1000);
      if (lag !== null) lagAtFailure.set({ site }, lag);
    } else if (e.kind === 'switchover-complete') {
      const ms = num(e.data.heldMs);
      if (ms !== null) held.observe({ site }, ms / 1000);
    } else if (e.kind === 'drill-complete' || e.kind === 'drill-failed') {
      drills.inc({ site, result: e.kind === 'drill-complete' ? 'ok' : 'failed' });
      const age = num(e.data.dataAgeMs);
      if (age !== null) drillAge.set({ site }, age);
      const total = num(e.data.totalMs);
      if (total !== null && e.kind === 'drill-complete') drillTotal.observe({ site }, total / 1000);
    }
  });
  controller.store.onJournal((j: JournalEntry, rb) => {
    if (j.phase !== 'end') return;
    const ms = num(j.data.ms);
    if (ms === null) return;
    steps.observe({ kind: rb.kind, step: j.step }, ms / 1000);
    if (j.step === 'fence') fence.observe({ site: rb.site, kind: rb.kind }, ms / 1000);
  });

  // ---------------------------------------------------------------- notifications
  if (sources.notify) {
    const notify = sources.notify;
    const perTarget = (name: string, help: string, pick: (t: ReturnType<typeof notify>[number]) => number) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['target'],
        registers,
        collect() {
          this.reset();
          for (const t of notify()) this.set({ target: t.target }, pick(t));
        },
      });
    new client.Counter({
      name: 'understudy_notify_deliveries_total',
      help: 'Notification delivery attempts by this controller, by target and outcome (delivered, failed, given-up)',
      labelNames: ['target', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const t of notify()) {
          this.inc({ target: t.target, outcome: 'delivered' }, t.delivered);
          this.inc({ target: t.target, outcome: 'failed' }, t.failedAttempts);
          this.inc({ target: t.target, outcome: 'given-up' }, t.givenUp);
        }
      },
    });
    perTarget('understudy_notify_pending', 'Notifications queued and not delivered yet', (t) => t.pending);
    perTarget('understudy_notify_failing', '1 while deliveries to the target keep failing', (t) => (t.failing ? 1 : 0));
  }
  return registry;
}
