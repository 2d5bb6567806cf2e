import type { AppProbe } from '../monitor/app-probe.ts';
import type { ActionGovernor } from './action-governor.ts';
import { RECENT_LATENCY_MS } from '../shared/contracts.ts';
import { SlowdownDetector, type SlowdownDecision } from '../monitor/slowdown-detector.ts';
import type { SiteStats } from '../shared/contracts.ts';
import type { RunbookRecord } from '../state/state-store.ts';
import { PeerLatency } from './peer-latency.ts';
import { ReaderClients } from './reader-clients.ts';
import { chooseReaderHost } from './reader-choice.ts';
import { heldElsewhere } from './pool-facts.ts';
import { canScale, readerEndpoint } from './reader-facts.ts';
import { ReaderSet } from './reader-set.ts';
import type { RunbookDeps } from './runbook-journal.ts';
import { ScaleInRunbook, type ScaleInData } from './scale-in-runbook.ts';
import { ScaleOutRunbook, type ScaleDeps, type ScaleOutData } from './scale-out-runbook.ts';
import { appEndpoint, routeFor, siteProbe } from './site-facts.ts';
import { background } from '../shared/background.ts';

/** The span the slowdown detector's p95s cover: the director's `recentLatencyMs` (the last second). */
const STATS_WINDOW_MS = RECENT_LATENCY_MS;
/** A reader whose probe fails this many times in a row is removed. */
const READER_FALL = 3;
const READER_PROBE_EVERY_MS = 250;

export interface ScaleControllerDeps extends RunbookDeps {
  governor: ActionGovernor;
  onDirectorStats: (listener: (stats: SiteStats[], at: number, bySite: ReadonlyMap<string, SiteStats>) => void) => void;
  /** A failover/switchover/restore runbook is running for the site (its route is not ours to push). */
  siteBusy: (site: string) => boolean;
  /** Clock of the detectors (tests). @default Date.now */
  now?: () => number;
}

interface SiteScaleState {
  detector: SlowdownDetector;
  /** Since when every serving host has been well under the threshold (null: not now). */
  lowSince: number | null;
  /** When the last scale-out of the site ended (its own cooldown, `scale.cooldown`). */
  lastScaleOutAt: number;
  /** The last deferral told in an event, so that a repeated one is not told again. */
  lastDeferral: string | null;
  /** The last slowdown decision (for scale-out reasons and evidence). */
  lastDecision: SlowdownDecision | null;
  /** The app says it sheds load (load-watch.ts): a reason to scale out like a slowdown, and never to scale in. */
  shedding: LoadCause | null;
}

/** Why the site wants more hosts beside a slowdown: its app sheds load. */
export interface LoadCause {
  reason: string;
  since: number;
  evidence: unknown;
}

interface ReaderProbe {
  probe: AppProbe;
  fails: number;
  healthy: boolean;
  running: boolean;
}

/**
 * Scaling reads out and back in. Fed by the director's
 * per-upstream latency (every 500 ms): a SlowdownDetector per site judges the hosts
 * that serve it (primary and readers, from real traffic) and its idle powered hosts
 * (PeerLatency). Decisions:
 *
 *  - `slowdown` of a serving host: raise `slowdown-detected`, then — if the site may
 *    scale (a read-only portion, `scale.max` > hosts serving), its own cooldown is
 *    over, a free host exists (reader-choice.ts) and the governor allows it — run a
 *    scale-out runbook. While the slowdown lasts, each cooldown adds one more, up to
 *    `scale.max`. Never a failover, never a fence.
 *  - `global-slowdown` (every host of the site slow together): the event, nothing else.
 *  - low load (every serving host's p95 under half the threshold, or too few requests
 *    to judge) for `scale.stabilization`: give the newest reader back (scale-in);
 *    each further one after another stabilization window.
 *  - a reader that fails its probe READER_FALL times in a row: removed (no failover).
 *  - readers of an older epoch (the primary moved): removed; the route at the new
 *    epoch never names them (site-facts' routeFor has no readers), so they serve
 *    nothing from the moment the takeover routes.
 *
 * One scale runbook per site at a time; it runs beside (never blocks) the site's
 * failover machinery.
 */
export class ScaleController {
  readonly readers: ReaderSet;
  private readonly readerClients: ReaderClients;
  private readonly sites = new Map<string, SiteScaleState>();
  private readonly active = new Map<string, Promise<void>>();
  private readonly probes = new Map<string, ReaderProbe>();
  private readonly peers: PeerLatency;
  private probeTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly deps: ScaleControllerDeps) {
    this.readers = new ReaderSet(deps.config.controller.stateDir);
    this.readerClients = new ReaderClients(deps.clients);
    this.peers = new PeerLatency(
      () => this.idleHosts(),
      (h, t) => deps.clients.agentStatus(h, t),
    );
    // Every site is watched: a slowdown is raised even where it cannot scale (scale.max 1,
    // no volume.readonly); it is then only told (`scale-out-deferred`, code cannot-scale).
    for (const [name, cfg] of Object.entries(deps.config.sites)) {
      this.sites.set(name, {
        detector: new SlowdownDetector({
          p95Ms: cfg.health.performance.p95Ms,
          windowMs: cfg.health.performance.windowMs,
          statsWindowMs: STATS_WINDOW_MS,
          globalFactor: 4,
          ...(deps.now ? { now: deps.now } : {}),
        }),
        lowSince: null,
        lastScaleOutAt: 0,
        lastDeferral: null,
        lastDecision: null,
        shedding: null,
      });
    }
  }

  static owns(kind: string): boolean {
    return kind === 'scale-out' || kind === 'scale-in';
  }

  private get scaleDeps(): ScaleDeps {
    return { ...this.deps, readerSet: this.readers, readerClients: this.readerClients, pushRoute: (site) => this.pushRoute(site) };
  }

  /** Starts watching; `resume` are the scale runbooks a previous controller left running. */
  start(resume: RunbookRecord[]): void {
    for (const rb of resume) this.launch(rb);
    this.deps.onDirectorStats((_stats, at, bySite) => this.onStats(bySite, at));
    this.peers.start();
    this.probeTimer = setInterval(() => this.probeReaders(), READER_PROBE_EVERY_MS);
  }

  stop(): void {
    this.stopped = true;
    this.peers.stop();
    if (this.probeTimer) clearInterval(this.probeTimer);
    for (const p of this.probes.values()) background(p.probe.close());
    this.probes.clear();
  }

  /**
   * The site's app sheds load (429, 503 with Retry-After), or no longer (null): while it
   * does, each judgement may add a reader as for a slowdown (same cooldown, `scale.max`,
   * free host and governor), and no reader is given back.
   */
  noteLoad(site: string, cause: LoadCause | null): void {
    const st = this.sites.get(site);
    if (st) st.shedding = cause;
  }

  /** host:port of the readers the site's route should name now (serving, current epoch). */
  readerEndpoints(site: string): string[] {
    const rec = this.deps.store.getSite(site);
    const cfg = this.deps.config.sites[site];
    if (!rec || !cfg) return [];
    return this.readers
      .of(site)
      .filter((r) => r.state === 'serving' && r.epoch === rec.epoch)
      .map((r) => readerEndpoint(this.deps.config, r.host, cfg));
  }

  /** The status page's `readers`: every reader the site has (adding, serving or removing), with its probe's health. */
  readerStatus(site: string): { host: string; address: string; healthy: boolean; state: string; since: number }[] {
    return this.readers.of(site).map((r) => ({
      host: r.host,
      address: this.deps.config.hosts[r.host]?.address ?? '',
      healthy: this.probes.get(`${site}/${r.host}`)?.healthy ?? false,
      state: r.state,
      since: r.since,
    }));
  }

  /** Pushes the site's route with its serving readers (not while another runbook owns the route). */
  async pushRoute(site: string): Promise<void> {
    const rec = this.deps.store.getSite(site);
    if (!rec || rec.state !== 'serving' || this.deps.siteBusy(site)) return;
    await this.deps.clients.putRoute({ ...routeFor(this.deps.config, site, rec.primaryHost, rec.epoch), readers: this.readerEndpoints(site) });
  }

  /** Every reader of every site (RunbookDeps.readers: a failover may take one back). */
  allReaders(): { site: string; host: string }[] {
    return [...this.sites.keys()].flatMap((site) => this.readers.of(site).map((r) => ({ site, host: r.host })));
  }

  /**
   * RunbookDeps.reclaimReader: another site's failover needs `host`. The reader goes
   * out of `site`'s route at once, its app stops, its copy is dropped; the host stays
   * powered for the failover. An event says why.
   */
  async reclaim(site: string, host: string): Promise<void> {
    const r = this.readers.of(site).find((x) => x.host === host);
    const rec = this.deps.store.getSite(site);
    await this.readers.remove(site, host);
    await this.pushRoute(site).catch(() => undefined);
    await this.deps.clients.stopApp(host, site).catch(() => undefined);
    const h = this.deps.config.hosts[host]!;
    if (rec) await this.readerClients.stopShipping(this.deps.config.hosts[rec.primaryHost]!.storage, site, h.storage).catch(() => undefined);
    await this.readerClients.drop(h.storage, site, r?.epoch ?? rec?.epoch ?? 0).catch(() => undefined);
    this.deps.store.addEvent({ site, host, kind: 'reader-reclaimed', message: `${site}: reader ${host} taken back for another site's failover`, data: {} });
  }

  // ------------------------------------------------------------------ decisions

  private onStats(bySite: ReadonlyMap<string, SiteStats>, at: number): void {
    if (this.stopped) return;
    // The idle hosts' latency is read once per snapshot: per site, it would cost sites² per poll.
    const peers = this.peers.snapshot();
    for (const [site, st] of this.sites) {
      try {
        this.judge(site, st, bySite.get(site), peers, at);
      } catch (e) {
        this.deps.log.warn({ site, err: (e as Error).message }, 'scale decision failed');
      }
    }
  }

  private judge(site: string, st: SiteScaleState, stats: SiteStats | undefined, peers: ReturnType<PeerLatency['snapshot']>, at: number): void {
    const { store, config } = this.deps;
    const rec = store.getSite(site);
    const cfg = config.sites[site]!;
    if (!rec || rec.state !== 'serving' || this.deps.siteBusy(site)) {
      st.lowSince = null;
      return;
    }
    this.dropStale(site, rec.epoch, rec.primaryHost);
    const primary = appEndpoint(config.hosts[rec.primaryHost]!, cfg);
    const members = new Set([primary, ...this.readerEndpoints(site)]);
    // Only the hosts serving the site now: the director keeps stats of old upstreams.
    const serving = (stats?.upstreams ?? []).filter((u) => members.has(u.upstream));
    const decision = st.detector.observe([...serving.map((u) => ({ upstream: u.upstream, latencyMs: u.recentLatencyMs })), ...peers]);
    if (decision) this.tell(site, rec.primaryHost, decision, at);

    // Low load: every serving host well under the threshold (or too little traffic to judge).
    const low =
      st.shedding === null &&
      st.detector.level === 'none' &&
      serving.every((u) => u.latencyMs.count < 20 || u.latencyMs.p95 < cfg.health.performance.p95Ms / 2);
    st.lowSince = low ? (st.lowSince ?? at) : null;

    if (this.active.has(site)) return;
    const servingReaders = this.readers.of(site).filter((r) => r.state === 'serving' && r.epoch === rec.epoch);
    if (st.detector.level === 'slowdown') {
      const slow = st.lastDecision?.evidence.slowHosts.filter((h) => members.has(h)) ?? [];
      if (slow.length > 0 && !canScale(cfg)) {
        this.defer(site, 'cannot-scale', cfg.scale.max <= 1 ? `scale.max is ${cfg.scale.max}` : 'the site has no volume.readonly portion a reader could serve');
      } else if (slow.length > 0) this.tryScaleOut(site, st, rec.primaryHost, rec.epoch, rec.replicaStorage, 1 + servingReaders.length, at);
    } else if (st.shedding !== null) {
      if (!canScale(cfg))
        this.defer(site, 'cannot-scale', cfg.scale.max <= 1 ? `scale.max is ${cfg.scale.max}` : 'the site has no volume.readonly portion a reader could serve');
      else this.tryScaleOut(site, st, rec.primaryHost, rec.epoch, rec.replicaStorage, 1 + servingReaders.length, at, st.shedding);
    } else if (servingReaders.length > 0 && st.lowSince !== null && at - st.lowSince >= (cfg.scale.stabilizationMs ?? 30_000)) {
      this.tryScaleIn(site, st, rec.primaryHost, rec.epoch, servingReaders[servingReaders.length - 1]!.host, at);
    }
  }

  private tell(site: string, primaryHost: string, d: SlowdownDecision, at: number): void {
    const st = this.sites.get(site)!;
    st.lastDecision = d;
    const cfg = this.deps.config.sites[site]!;
    const p95s = Object.fromEntries(d.evidence.hosts.map((h) => [h.upstream, h.p95Ms]));
    const data = {
      detectedAt: at,
      p95s,
      thresholdP95Ms: d.evidence.thresholdP95Ms,
      windowMs: d.evidence.windowMs,
      holdMs: d.evidence.holdMs,
      slowHosts: d.evidence.slowHosts,
      evidence: d.evidence,
    };
    if (d.kind === 'slowdown') {
      this.deps.store.addEvent({
        site,
        host: primaryHost,
        kind: 'slowdown-detected',
        message: `${site}: performance decrease: ${d.reason}. Response: ${canScale(cfg) ? `add read-only hosts (up to ${cfg.scale.max} in all)` : 'none possible (scale.max 1 or no volume.readonly)'}; no failover, no fencing`,
        data,
      });
    } else if (d.kind === 'global-slowdown') {
      this.deps.store.addEvent({ site, host: null, kind: 'global-slowdown', message: `${site}: ${d.reason}. No action: no failover, no scale-out`, data });
    } else {
      this.deps.store.addEvent({ site, host: null, kind: 'slowdown-cleared', message: `${site}: ${d.reason}`, data });
    }
  }

  private defer(site: string, code: string, message: string, data: Record<string, unknown> = {}): void {
    const st = this.sites.get(site)!;
    if (st.lastDeferral === code) return;
    st.lastDeferral = code;
    this.deps.store.addEvent({ site, host: null, kind: 'scale-out-deferred', message: `${site}: no scale-out now: ${message}`, data: { code, ...data } });
  }

  private tryScaleOut(
    site: string,
    st: SiteScaleState,
    primaryHost: string,
    epoch: number,
    replicaStorage: string | null,
    hosts: number,
    at: number,
    load?: LoadCause,
  ): void {
    const { config, governor, relay } = this.deps;
    const cfg = config.sites[site]!;
    if (hosts >= cfg.scale.max) return this.defer(site, 'at-max', `${hosts} hosts serve ${site}, scale.max is ${cfg.scale.max}`);
    const left = st.lastScaleOutAt + cfg.scale.cooldownMs - at;
    if (left > 0) return; // the site's own cooldown (scale.cooldown) — silent: it ends by itself
    const primaries = new Set(this.deps.store.listSites().map((s) => s.primaryHost));
    const choice = chooseReaderHost({
      config,
      site: cfg,
      primaryHost,
      replicaStorage,
      readersInUse: this.readers.hostsInUse(),
      primaries,
      power: (h) => relay.status(h).power,
      // A host another site's runbook is taking (a failover's or switchover's target) is not lent.
      heldElsewhere: (h) =>
        heldElsewhere(
          config,
          { sites: this.deps.store.listSites(), running: this.deps.store.runningRunbooks(), readers: this.allReaders() },
          site,
          h,
          'switchover',
        ),
    });
    if (choice.host === null) return this.defer(site, 'no-host', choice.why);
    const d = load ? null : st.lastDecision;
    const reason = load ? load.reason : d ? `performance decrease: ${d.reason}` : 'performance decrease';
    const g = governor.decide(site, 'scale-out', reason, { target: choice.host });
    if (!g.allowed) return this.defer(site, `governor-${g.code}`, g.why, { retryAt: g.retryAt });
    st.lastDeferral = null;
    const evidence = load ? { load: load.evidence } : (d?.evidence ?? {});
    const data: ScaleOutData = {
      host: choice.host,
      epoch,
      primary: primaryHost,
      reason,
      evidence: { ...evidence, choice: choice.why },
      detectedAt: load?.since ?? d?.at ?? at,
    };
    const rb = this.deps.store.startRunbook(site, 'scale-out', data);
    this.deps.store.addEvent({
      site,
      host: choice.host,
      kind: 'scale-out-started',
      message: `${site}: scale-out #${rb.id}: adding ${choice.host} as a read-only host (${reason}; ${choice.why})`,
      data: { runbook: rb.id, host: choice.host, reason },
    });
    this.launch(rb);
  }

  private tryScaleIn(site: string, st: SiteScaleState, primaryHost: string, epoch: number, host: string, at: number): void {
    const cfg = this.deps.config.sites[site]!;
    const reason = `low load: every serving host's p95 under ${cfg.health.performance.p95Ms / 2} ms for ${at - st.lowSince!} ms (stabilization ${cfg.scale.stabilizationMs ?? 30_000} ms)`;
    const g = this.deps.governor.decide(site, 'scale-in', reason, {});
    if (!g.allowed) return;
    this.startScaleIn(site, { host, epoch, primary: primaryHost, reason, cause: 'low-load', evidence: { lowSince: st.lowSince } });
    st.lowSince = null; // the next one needs a whole window again
  }

  private startScaleIn(site: string, data: ScaleInData): void {
    const rb = this.deps.store.startRunbook(site, 'scale-in', data);
    this.deps.store.addEvent({
      site,
      host: data.host,
      kind: 'scale-in-started',
      message: `${site}: scale-in #${rb.id}: giving back reader ${data.host} (${data.reason})`,
      data: { runbook: rb.id, host: data.host, cause: data.cause, reason: data.reason },
    });
    this.launch(rb);
  }

  /** Readers of an older epoch (the primary moved): taken down, one at a time. */
  private dropStale(site: string, epoch: number, primaryHost: string): void {
    if (this.active.has(site)) return;
    const stale = this.readers.of(site).find((r) => r.epoch !== epoch);
    if (!stale) return;
    const cfg = this.deps.config.sites[site]!;
    void cfg;
    this.startScaleIn(site, {
      host: stale.host,
      epoch: stale.epoch,
      primary: primaryHost,
      reason: `the primary of ${site} moved (epoch ${stale.epoch} → ${epoch}); a reader follows no other primary's copy, it is dropped`,
      cause: 'stale-epoch',
      evidence: { readerEpoch: stale.epoch, epoch },
    });
  }

  private launch(rb: RunbookRecord): void {
    const site = rb.site;
    const runbook = rb.kind === 'scale-in' ? new ScaleInRunbook(this.scaleDeps, rb) : new ScaleOutRunbook(this.scaleDeps, rb);
    const p = runbook
      .run()
      .then(() => {
        if (rb.kind === 'scale-out') {
          const st = this.sites.get(site);
          if (st) st.lastScaleOutAt = Date.now();
          this.deps.governor.completed(site, 'scale-out');
        }
      })
      .catch((e: Error) => this.deps.log.warn({ site, runbook: rb.id, err: e.message }, `${rb.kind} runbook stopped`))
      .finally(() => {
        this.active.delete(site);
      });
    this.active.set(site, p);
  }

  // ------------------------------------------------------------------ reader health

  private probeReaders(): void {
    const want = new Set<string>();
    for (const site of this.sites.keys()) {
      const cfg = this.deps.config.sites[site]!;
      for (const r of this.readers.of(site)) {
        const key = `${site}/${r.host}`;
        want.add(key);
        let p = this.probes.get(key);
        if (!p) {
          p = { probe: siteProbe(this.deps.config.hosts[r.host]!, cfg), fails: 0, healthy: false, running: false };
          this.probes.set(key, p);
        }
        if (p.running) continue;
        p.running = true;
        const probe = p;
        background(
          probe.probe
            .run()
            .then((res) => {
              probe.healthy = res.ok;
              probe.fails = res.ok ? 0 : probe.fails + 1;
              if (probe.fails >= READER_FALL) this.readerFailed(site, r.host, res.error ?? 'probe failed');
            })
            .finally(() => {
              probe.running = false;
            }),
        );
      }
    }
    for (const [key, p] of this.probes)
      if (!want.has(key)) {
        background(p.probe.close());
        this.probes.delete(key);
      }
  }

  private readerFailed(site: string, host: string, error: string): void {
    const r = this.readers.of(site).find((x) => x.host === host);
    if (!r || r.state !== 'serving' || this.active.has(site)) return;
    const rec = this.deps.store.getSite(site);
    if (!rec) return;
    this.deps.store.addEvent({
      site,
      host,
      kind: 'reader-failed',
      message: `${site}: reader ${host} failed ${READER_FALL} probes in a row (${error}); it is removed — no failover, a reader holds nothing the primary does not`,
      data: { error },
    });
    this.startScaleIn(site, { host, epoch: r.epoch, primary: rec.primaryHost, reason: `reader failed: ${error}`, cause: 'reader-failed', evidence: { error } });
  }

  // ------------------------------------------------------------------ peers

  /** Powered hosts of a site's pool that carry none of its traffic (not primary, not a reader). */
  private idleHosts(): string[] {
    const out = new Set<string>();
    const lent = this.readers.hostsInUse();
    /** Each host's power is asked once a call, however many sites name it. */
    const checked = new Set<string>();
    for (const rec of this.deps.store.listSites()) {
      const cfg = this.deps.config.sites[rec.site];
      if (!cfg || !this.sites.has(rec.site)) continue;
      for (const h of cfg.standby) {
        if (h === rec.primaryHost || lent.has(h) || checked.has(h)) continue;
        checked.add(h);
        if (this.deps.relay.status(h).power === 'on') out.add(h);
      }
    }
    return [...out];
  }
}
