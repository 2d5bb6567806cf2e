import path from 'node:path';
import pino from 'pino';
import type { UnderstudyConfig } from '../config/types.ts';
import { SiteMonitor, type FailureEvidence } from '../monitor/site-monitor.ts';
import { StaleAppWatch } from './stale-app-watch.ts';
import { probeDetection, type Detection } from '../monitor/detection.ts';
import { MalfunctionWatch } from '../monitor/malfunction-watch.ts';
import { LoadWatch, type LoadEpisode } from '../monitor/load-watch.ts';
import { LocalListeners, type ListenerLookup } from '../hosts/local-listeners.ts';
import { formatTransformDiff } from '../transform/diff.ts';
import { isProcessAlive } from '../power/process-group.ts';
import { HostRelays } from '../power/host-relays.ts';
import type { RelayDriver, RelayStatus } from '../power/relay.ts';
import type { ConnErrorSignal, RouteTable, SiteStats, StorageStatus, VaultPoint, VolumeStatus } from '../shared/contracts.ts';
import type { ActionGovernor } from './action-governor.ts';
import { callJson } from '../shared/http-client.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { StateStore } from '../state/state-store.ts';
import { PartClients } from './clients.ts';
import { FailoverRunbook, type FailoverData, type RunbookDeps } from './failover-runbook.ts';
import { SwitchoverRunbook, type SwitchoverData } from './switchover-runbook.ts';
import { RestoreRunbook, type RestoreData } from './restore-runbook.ts';
import type { RunbookRecord } from '../state/state-store.ts';
import { appEndpoint, probeUrl, renderedTransform, routeFor, startRequest } from './site-facts.ts';
import { keepProtected, placementFacts, replicaStorageFor } from './reprotection.ts';
import { nextTakeover } from './placement.ts';
import { waitSiteStarted } from './app-start-watch.ts';
import { buildStatus, unprotectedDatabases, type StatusView } from './status-view.ts';
import { DatabaseWatch } from './database-watch.ts';
import { ScaleController } from './scale-controller.ts';
import { heldElsewhere } from './pool-facts.ts';
import { PoolWatch } from './pool-watch.ts';
import { DirectorStatsFeed, type DirectorStatsListener } from './director-stats-feed.ts';
import { createGovernor } from './governor-setup.ts';
import { AutoFailover } from './auto-failover.ts';
import { HostTrustWatch, trustProbeEveryMs } from './host-trust-watch.ts';
import { primaryRecovered } from './primary-recovered.ts';
import { MalfunctionTriage } from './malfunction-triage.ts';
import { trustedCandidates } from './trusted-candidates.ts';
import { sleep, waitFor } from './timing.ts';
import { Drills } from './drills.ts';
import { background } from '../shared/background.ts';

const RECONCILE_EVERY_MS = 1000;
const STORAGE_POLL_MS = 250;

/**
 * The controller decides. A level-based reconcile loop brings every site to what
 * the config and the state store say (primary running, routed at its epoch,
 * replicating); monitors watch each primary and start the failover runbook when it
 * fails; runbooks found `running` at start are resumed at their journaled step.
 */
export class Controller {
  readonly store: StateStore;
  readonly relay: RelayDriver;
  private readonly relays: HostRelays;
  readonly clients: PartClients;
  readonly log: pino.Logger;
  /** The no-flapping memory (cooldowns, host trust, flap hold-outs) every automatic action asks first. */
  readonly governor: ActionGovernor;
  /** Scale reads out on a slowdown and back in (scale-controller.ts). */
  readonly scale: ScaleController;
  /** The director's `GET /v1/stats`, every 500 ms: real traffic for the malfunction and slowdown detectors. */
  private readonly directorStats: DirectorStatsFeed;
  private readonly monitors = new Map<string, SiteMonitor>();
  private readonly activeRunbooks = new Map<string, Promise<void>>();
  /** Per site, the malfunction detector of its current primary (fed by directorStats and the monitor's probes). */
  private readonly malfunctionWatches = new Map<string, MalfunctionWatch>();
  /** Per site, whether its app says it sheds load (429, 503 with Retry-After): fed like the malfunction watch. */
  private readonly loadWatches = new Map<string, LoadWatch>();
  /** The primary each load watch follows. */
  private readonly loadWatchHost = new Map<string, string>();
  /** Whose a malfunction's errors are (the host's, the request's, the app's) before any failover for it. */
  private readonly triage: MalfunctionTriage;
  /** Sites whose malfunction is being judged now (one judgement at a time per site). */
  private readonly triaging = new Set<string>();
  private readonly autoFailover: AutoFailover;
  private readonly trustWatch: HostTrustWatch;
  private readonly storageStatus = new Map<string, StorageStatus | null>();
  private reconcileTimer: NodeJS.Timeout | null = null;
  private storageTimer: NodeJS.Timeout | null = null;
  private readonly staleWatch: StaleAppWatch;
  /** Says when a serving site has no spare left to fail over to (pool-watch.ts). */
  private readonly poolWatch: PoolWatch;
  private reconciling = false;
  private stopped = false;
  /** Rehearsals (`understudy drill`): they hold off scaling and give way to any runbook (drills.ts). */
  readonly drills: Drills;

  /** A timer's or a watcher's work that failed where nothing awaited it: logged, never lost. */
  private readonly onBackgroundError = (err: unknown): void => {
    this.log.error({ err }, 'background work of the controller failed; it runs again at its next tick');
  };

  constructor(
    readonly config: UnderstudyConfig,
    logger?: pino.Logger,
  ) {
    this.log = logger ?? pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.store = new StateStore(config.controller.stateDir);
    this.relays = new HostRelays(config, this.store, path.join(config.controller.stateDir, 'logs'));
    this.relay = this.relays;
    this.clients = new PartClients(config);
    // Embedded hosts share one network stack: who answers on an address is told by the process that listens (local-listeners.ts).
    const local = new LocalListeners(() => Object.keys(config.hosts).map((h) => ({ host: h, group: this.store.getRelay(h)?.pgid ?? null })));
    // A host behind another relay is another machine: this machine's sockets say nothing about it.
    const remote = new Set(
      Object.values(config.hosts)
        .filter((h) => h.power !== 'local')
        .map((h) => h.address),
    );
    const listeners: ListenerLookup = {
      whoListens: (address, port) => (remote.has(address) ? { kind: 'unknown', why: `${address} is another machine` } : local.whoListens(address, port)),
    };
    this.staleWatch = new StaleAppWatch(config, this.store, (site, host) => this.scale.readers.of(site).some((r) => r.host === host), listeners);
    this.poolWatch = new PoolWatch({ config, store: this.store, readers: () => this.scale.allReaders() });
    this.governor = createGovernor(config);
    this.directorStats = new DirectorStatsFeed(
      () => this.clients.stats(),
      (e) => this.log.warn({ err: e.message }, 'director stats listener failed'),
    );
    this.scale = new ScaleController({
      config,
      store: this.store,
      relay: this.relay,
      clients: this.clients,
      log: this.log,
      governor: this.governor,
      onDirectorStats: (l) => this.onDirectorStats(l),
      siteBusy: (site) => this.activeRunbooks.has(site) || this.drills.running() !== null,
    });
    this.onDirectorStats((stats) => {
      for (const w of this.malfunctionWatches.values()) w.observeStats(stats);
      for (const w of this.loadWatches.values()) w.observeStats(stats);
    });
    this.triage = new MalfunctionTriage({
      addEvent: (e) => {
        this.store.addEvent(e);
      },
      others: (site) => {
        const cfg = this.config.sites[site]!;
        return this.scale.readers
          .of(site)
          .filter((r) => r.state === 'serving')
          .map((r) => ({ host: r.host, endpoint: appEndpoint(this.config.hosts[r.host]!, cfg) }));
      },
    });
    const addEvent = (e: Parameters<StateStore['addEvent']>[0]): void => {
      this.store.addEvent(e);
    };
    this.trustWatch = new HostTrustWatch(
      {
        governor: this.governor,
        addEvent,
        hosts: () => Object.keys(this.config.hosts),
        // A recorded primary that is not monitored is failing (its failover deferred or running): no trust from its agent.
        primaries: () =>
          new Set([
            ...[...this.monitors.values()].map((m) => m.target.host),
            ...this.store
              .listSites()
              .filter((r) => r.state !== 'down')
              .map((r) => r.primaryHost),
          ]),
        powered: (h) => this.relay.status(h).power === 'on',
        agentAnswers: (h, timeoutMs) => this.clients.agentStatus(h, timeoutMs),
      },
      trustProbeEveryMs(config),
    );
    this.autoFailover = new AutoFailover({
      governor: this.governor,
      addEvent,
      hostFailed: (h) => {
        const t = this.governor.hostFailed(h);
        this.trustWatch.noteFailed(t);
        return t;
      },
      stillPrimary: (site, host) => {
        const r = this.store.getSite(site);
        return !this.stopped && r?.primaryHost === host && r.state === 'serving' && !this.activeRunbooks.has(site);
      },
      candidates: (site, failed) =>
        trustedCandidates(this.config, this.config.sites[site]!, { failed, replicaStorage: this.store.getSite(site)?.replicaStorage ?? null }, this.governor),
      recovered: (site, host, d) => primaryRecovered(d, this.monitors.get(site), this.malfunctionWatches.get(site), host),
      start: (site, host, d, opts) => {
        this.triage.noteFailover(site, host, d, this.config.sites[site]!.health.malfunction.windowMs);
        this.startFailover(site, {
          reason: d.reason,
          evidence: d.data,
          detectedAt: d.detectedAt,
          lastHealthyAt: d.lastHealthyAt,
          ...(opts.avoid.length > 0 ? { avoid: opts.avoid } : {}),
        });
        return this.activeRunbooks.get(site) ?? Promise.resolve();
      },
    });
    this.drills = new Drills({ ...this.deps, volume: (storage, site) => this.volumeStatus(storage, site) });
  }

  /**
   * Every director stats snapshot (`GET /v1/stats`, every 500 ms while the
   * controller runs), with the controller's clock when it arrived. No snapshot
   * while the director does not answer.
   */
  onDirectorStats(listener: DirectorStatsListener): void {
    this.directorStats.subscribe(listener);
  }

  /** The newest director stats snapshot, or null before the first. */
  get latestDirectorStats(): { stats: SiteStats[]; at: number } | null {
    return this.directorStats.latest;
  }

  private get deps(): RunbookDeps {
    return {
      config: this.config,
      store: this.store,
      relay: this.relay,
      clients: this.clients,
      log: this.log,
      governor: this.governor,
      stopping: () => this.stopped,
      readers: () => this.scale.allReaders(),
      reclaimReader: (site, host) => this.scale.reclaim(site, host),
    };
  }

  async start(): Promise<void> {
    this.storageTimer = setInterval(() => background(this.pollStorage(), this.onBackgroundError), STORAGE_POLL_MS);
    await this.pollStorage();
    this.directorStats.start();
    // Resume what a previous controller left half-done before anything else.
    for (const rb of this.store.runningRunbooks()) {
      if (ScaleController.owns(rb.kind) || rb.kind === 'drill') continue; // resumed by the scale controller below, or the drills
      this.store.addEvent({
        site: rb.site,
        host: null,
        kind: 'runbook-resumed',
        message: `resuming ${rb.kind} runbook #${rb.id} of ${rb.site} at its journaled step`,
        data: { runbook: rb.id },
      });
      this.launchRunbook(rb.site, this.runbookOf(rb));
    }
    this.drills.resume();
    for (const site of Object.keys(this.config.sites)) {
      const rec = this.store.getSite(site);
      if (!rec) await this.bootstrapSite(site);
      else if (rec.state === 'starting') await this.startSite(site);
    }
    await this.reconcileAll();
    this.reconcileTimer = setInterval(() => background(this.reconcileAll(), this.onBackgroundError), RECONCILE_EVERY_MS);
    this.scale.start(this.store.runningRunbooks().filter((rb) => ScaleController.owns(rb.kind)));
    this.staleWatch.start();
    this.trustWatch.start();
    this.relays.watch();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    if (this.storageTimer) clearInterval(this.storageTimer);
    this.directorStats.stop();
    this.scale.stop();
    this.staleWatch.stop();
    this.trustWatch.stop();
    this.relays.unwatch();
    this.autoFailover.stop();
    for (const w of this.malfunctionWatches.values()) w.stop();
    this.malfunctionWatches.clear();
    for (const w of this.loadWatches.values()) w.stop();
    this.loadWatches.clear();
    for (const m of this.monitors.values()) m.stop();
    this.monitors.clear();
    this.store.close();
  }

  // ------------------------------------------------------------------ first start of a site
  /** A site never seen before: its volume is created from the seed at epoch 1, then it is started. */
  private async bootstrapSite(site: string): Promise<void> {
    const cfg = this.config.sites[site]!;
    const primary = this.config.hosts[cfg.primary]!;
    const epoch = 1;
    this.log.info({ site, host: primary.name }, 'bootstrapping site');
    await this.clients.initVolume(primary.storage, site, epoch, cfg.app.seed);
    const { changes } = await this.clients.transform(primary.storage, site, epoch, renderedTransform(primary, cfg));
    if (changes.length > 0)
      this.store.addEvent({
        site,
        host: primary.name,
        kind: 'transformed',
        message: `${site}'s new volume on ${primary.storage} fitted to ${primary.name}:\n${formatTransformDiff(changes)}`,
        data: { changes },
      });
    const replica = replicaStorageFor(this.deps, site, primary.name);
    this.store.putSite({ site, epoch, primaryHost: primary.name, state: 'starting', replicaStorage: replica });
    await this.startSite(site);
  }

  /**
   * Brings a site in state `starting` to `serving` on its recorded primary: after a
   * bootstrap, or after `up` was stopped cleanly and started again. Idempotent.
   */
  private async startSite(site: string): Promise<void> {
    const rec = this.store.getSite(site)!;
    const cfg = this.config.sites[site]!;
    const primary = this.config.hosts[rec.primaryHost]!;
    await this.bootHosts();
    if (this.relay.status(primary.name).power === 'off') await this.relay.on(primary.name);
    await waitFor(() => this.clients.agentStatus(primary.name, 300), { timeoutMs: 20_000, everyMs: 50, what: `the agent of ${primary.name}` });
    await this.clients.initVolume(primary.storage, site, rec.epoch, cfg.app.seed);
    const start = startRequest(this.config, primary, cfg, rec.epoch);
    await this.clients.startApp(primary.name, site, start);
    await waitSiteStarted((h, t) => this.clients.agentStatus(h, t), primary, cfg, start.command, 20);
    await this.clients.putRoute(routeFor(this.config, site, primary.name, rec.epoch));
    if (rec.replicaStorage) await this.clients.replicate(primary.storage, site, rec.epoch, rec.replicaStorage);
    this.store.putSite({ ...rec, state: 'serving' });
    this.store.addEvent({
      site,
      host: primary.name,
      kind: 'site-started',
      message: `${site} serving on ${primary.name} (${appEndpoint(primary, cfg)}) at epoch ${rec.epoch}${rec.replicaStorage ? `, replicating to ${rec.replicaStorage}` : ', unprotected'}`,
      data: { epoch: rec.epoch, replica: rec.replicaStorage },
    });
  }

  /** Powers on every host marked `boot` (primaries and warm standbys) that is off. */
  private async bootHosts(): Promise<void> {
    for (const h of Object.values(this.config.hosts)) {
      if (h.boot && this.relay.status(h.name).power === 'off' && this.store.getRelay(h.name) === undefined) {
        await this.relay.on(h.name);
        this.store.addEvent({ site: null, host: h.name, kind: 'power-on', message: `${h.name} powered on (boot)`, data: {} });
      }
    }
  }

  // ------------------------------------------------------------------ reconcile
  private async reconcileAll(): Promise<void> {
    if (this.reconciling || this.stopped) return;
    this.reconciling = true;
    try {
      let routes: RouteTable[] | null = null;
      try {
        const r = await this.clients.routes();
        routes = Array.isArray(r) ? r : r.routes;
      } catch {
        routes = null;
      }
      for (const site of Object.keys(this.config.sites)) {
        try {
          await this.reconcileSite(site, routes);
        } catch (e) {
          this.log.warn({ site, err: (e as Error).message }, 'reconcile failed; will retry');
        }
      }
      this.poolWatch.check();
    } finally {
      this.reconciling = false;
    }
  }

  /**
   * Level-based and idempotent: compares what is (director route, replication,
   * monitor) with what the state store says should be, and fixes the difference.
   * It never moves a primary: only a runbook does that.
   */
  private async reconcileSite(site: string, routes: RouteTable[] | null): Promise<void> {
    if (this.activeRunbooks.has(site)) return;
    const rec = this.store.getSite(site);
    if (!rec || rec.state === 'down' || rec.state === 'failing-over') return;
    const cfg = this.config.sites[site]!;
    const host = this.config.hosts[rec.primaryHost]!;
    const endpoint = appEndpoint(host, cfg);

    if (rec.state === 'starting') {
      // A controller that died while starting the site: finish it.
      await this.startSite(site);
      return;
    }
    this.ensureMonitor(site, rec.primaryHost, probeUrl(host, cfg));
    const monitor = this.monitors.get(site);
    if (monitor?.healthy) {
      const route = routes?.find((r) => r.site === site);
      // With the readers the scale controller lent the site (at this epoch).
      const want = { ...routeFor(this.config, site, host.name, rec.epoch), readers: this.scale.readerEndpoints(site) };
      const same = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
      if (
        routes &&
        (!route ||
          route.epoch < rec.epoch ||
          route.primary !== endpoint ||
          !same(route.sync, want.sync) ||
          !same(route.readers, want.readers) ||
          !same(route.ryw, want.ryw) ||
          !same(route.readPaths, want.readPaths))
      ) {
        await this.clients.putRoute(want);
        this.log.info({ site, epoch: rec.epoch, primary: endpoint }, 'route re-pushed to the director');
      }
    }
    // Level-based too: a corrupt primary copy whose replacement the governor deferred
    // (cooldown) is acted on once it allows. A restore or promotion resets the result.
    const primaryCopy = this.volumeStatus(host.storage, site);
    if (primaryCopy?.role === 'primary' && primaryCopy.verification?.ok === false) this.onPrimaryCorrupt(site, host.storage);
    // Unprotected (a re-protect failed, or the replica's storage was down), or a replica
    // no host could take over from any more: placed again (reprotection.ts).
    const now = await keepProtected({ ...this.deps, storageUp: (s) => !!this.storageStatus.get(s) }, rec);
    if (now === rec && rec.replicaStorage) {
      const vol = this.volumeStatus(host.storage, site);
      if (
        vol &&
        vol.role === 'primary' &&
        (!vol.replication || vol.replication.to !== rec.replicaStorage || vol.replication.state === 'stopped' || vol.replication.state === 'none')
      ) {
        await this.clients.replicate(host.storage, site, rec.epoch, rec.replicaStorage);
      }
    }
  }

  private ensureMonitor(site: string, hostName: string, url: string): void {
    const existing = this.monitors.get(site);
    if (existing && existing.target.host === hostName) return;
    existing?.stop();
    const relay = this.relay.status(hostName);
    const cfg = this.config.sites[site]!;
    const m = new SiteMonitor(
      { site, host: hostName, url, pid: relay.pid },
      cfg.health.probe,
      (e) => this.onPrimaryFailure(site, hostName, e),
      (r) => {
        this.trustWatch.probe(hostName, r.ok);
        this.malfunctionWatches.get(site)?.observeProbe(r);
        this.loadWatches.get(site)?.observeProbe(r);
      },
    );
    this.monitors.set(site, m);
    // A malfunction watch of this primary that was not acted on (its errors were not the
    // host's) is kept with what it learnt; any other is replaced by a fresh one.
    if (this.malfunctionWatches.get(site)?.target.host !== hostName) {
      this.malfunctionWatches.get(site)?.stop();
      const endpoint = appEndpoint(this.config.hosts[hostName]!, cfg);
      const w = new MalfunctionWatch(
        { site, host: hostName, upstream: endpoint },
        cfg.health.malfunction,
        () => this.monitors.get(site)?.lastHealthyAt ?? Date.now(),
        (d) => this.onDetection(site, hostName, d),
      );
      this.malfunctionWatches.set(site, w);
    }
    this.ensureLoadWatch(site, hostName);
    m.start();
  }

  /**
   * The site's load watch follows its primary: a new primary starts a new one (an
   * episode still open on the old one is cleared, so the scale controller never
   * keeps a stale reason to scale).
   */
  private ensureLoadWatch(site: string, hostName: string): void {
    const old = this.loadWatches.get(site);
    if (old && this.loadWatchHost.get(site) === hostName) return;
    if (old) {
      old.stop();
      if (old.shedding) this.scale.noteLoad(site, null);
    }
    const cfg = this.config.sites[site]!;
    const lw = new LoadWatch(
      site,
      { windowMs: cfg.health.malfunction.windowMs, probeFall: cfg.health.probe.fall },
      () => [appEndpoint(this.config.hosts[hostName]!, cfg), ...this.scale.readerEndpoints(site)],
      (e) => this.onLoadEpisode(site, hostName, e),
    );
    this.loadWatches.set(site, lw);
    this.loadWatchHost.set(site, hostName);
  }

  /** The app sheds load (or stopped): an event, and a reason to scale reads out where the site may. Never a failover. */
  private onLoadEpisode(site: string, host: string, e: LoadEpisode): void {
    const cfg = this.config.sites[site]!;
    if (e.kind === 'load-shedding') {
      const response =
        cfg.scale.max > 1 && cfg.volume.readonly.length > 0
          ? `adding read-only hosts (up to ${cfg.scale.max} in all)`
          : "none possible here (scale.max 1 or no volume.readonly); raise the app's limit or give its host more capacity";
      this.store.addEvent({
        site,
        host,
        kind: 'load-shedding',
        message: `${site}: load on ${host}: ${e.reason}. A sign of load, not a failure: no failover, no fencing. Response: ${response}`,
        data: { ...e.evidence, detectedAt: e.at },
      });
      this.scale.noteLoad(site, { reason: `load: ${e.reason}`, since: e.at, evidence: e.evidence });
    } else {
      this.store.addEvent({ site, host, kind: 'load-shedding-cleared', message: `${site}: ${e.reason}`, data: { ...e.evidence } });
      this.scale.noteLoad(site, null);
    }
  }

  // ------------------------------------------------------------------ failure → runbook
  /** The site monitor raised: what kind of failure, from the evidence and the process's liveness (crash, hang, malfunction …). */
  private onPrimaryFailure(site: string, host: string, e: FailureEvidence): void {
    const pid = this.relay.status(host).pid;
    const processAlive = e.kind === 'process-gone' ? false : pid === null ? null : isProcessAlive(pid);
    this.onDetection(site, host, probeDetection(e, processAlive));
  }

  /**
   * Any detector raised against the primary: its watches end (the reconcile loop
   * starts fresh ones while the site still serves there), and AutoFailover decides
   * (governor: cooldown, trust) whether the failover starts now.
   */
  private onDetection(site: string, host: string, d: Detection): void {
    if (d.failure === 'malfunction') {
      background(this.judgeMalfunction(site, host, d), this.onBackgroundError);
      return;
    }
    this.actOnDetection(site, host, d);
  }

  /**
   * A malfunction is acted on only when its errors are the host's (malfunction-triage.ts):
   * not when they follow the request, and not a second time in one incident.
   */
  private async judgeMalfunction(site: string, host: string, d: Detection): Promise<void> {
    if (this.triaging.has(site)) {
      // Judged already: a site monitor that raised meanwhile has stopped, so the reconcile loop starts a fresh one.
      if (d.source === 'probe' && this.monitors.get(site)?.target.host === host) {
        this.monitors.get(site)!.stop();
        this.monitors.delete(site);
      }
      return;
    }
    this.triaging.add(site);
    try {
      const cfg = this.config.sites[site]!;
      const monitor = this.monitors.get(site);
      const watch = this.malfunctionWatches.get(site);
      const verdict = await this.triage.triage({
        site,
        host,
        endpoint: appEndpoint(this.config.hosts[host]!, cfg),
        detection: d,
        watch: watch?.target.host === host ? watch : undefined,
        lastProbe: monitor?.target.host === host ? monitor.lastProbe : null,
        windowMs: cfg.health.malfunction.windowMs,
        probeTimeoutMs: cfg.health.probe.timeoutMs,
      });
      if (this.stopped) return;
      if (verdict.act === 'fail-over') {
        this.actOnDetection(site, host, verdict.detection);
        return;
      }
      // Not acted on. A site monitor that raised has stopped: the reconcile loop starts a fresh one.
      if (d.source === 'probe' && this.monitors.get(site)?.target.host === host) {
        this.monitors.get(site)!.stop();
        this.monitors.delete(site);
      }
    } catch (e) {
      this.log.warn({ site, err: (e as Error).message }, 'malfunction judgement failed; acting on the detection');
      this.actOnDetection(site, host, d);
    } finally {
      this.triaging.delete(site);
    }
  }

  private actOnDetection(site: string, host: string, d: Detection): void {
    if (this.monitors.get(site)?.target.host === host) {
      this.monitors.get(site)!.stop();
      this.monitors.delete(site);
    }
    if (this.malfunctionWatches.get(site)?.target.host === host) {
      this.malfunctionWatches.get(site)!.stop();
      this.malfunctionWatches.delete(site);
    }
    this.autoFailover.onDetection(site, host, d);
  }

  private startFailover(
    site: string,
    opts: {
      reason: string;
      evidence: Record<string, unknown>;
      detectedAt: number;
      lastHealthyAt: number;
      requestedTarget?: string;
      force?: boolean;
      avoid?: string[];
    },
  ): FailoverRunbook {
    const rec = this.store.getSite(site)!;
    const cfg = this.config.sites[site]!;
    const vol = this.volumeStatus(this.config.hosts[rec.primaryHost]!.storage, site);
    const data: FailoverData = {
      oldPrimary: rec.primaryHost,
      oldEpoch: rec.epoch,
      ...opts,
      // The worst lag of the last seconds: one sample of a lag that comes and goes with each snapshot understates it.
      replicationLagMsAtFailure: vol?.replication ? Math.max(vol.replication.lagMs, vol.replication.lagPeakMs ?? 0) : undefined,
      ...(vol?.replication?.lagOf ? { replicationLagOfAtFailure: vol.replication.lagOf } : {}),
      ...(unprotectedDatabases(vol).length > 0 ? { unprotectedAtFailure: unprotectedDatabases(vol).map((d) => d.path) } : {}),
    };
    void cfg;
    const rb = this.store.startRunbook(site, 'failover', data);
    this.store.addEvent({
      site,
      host: rec.primaryHost,
      kind: 'failover-started',
      message: `${site}: failover #${rb.id} from ${rec.primaryHost} started (${opts.reason})`,
      data: { runbook: rb.id },
    });
    const runbook = new FailoverRunbook(this.deps, rb);
    this.launchRunbook(site, runbook);
    return runbook;
  }

  private runbookOf(rb: RunbookRecord): FailoverRunbook | SwitchoverRunbook | RestoreRunbook {
    if (rb.kind === 'switchover') return new SwitchoverRunbook(this.deps, rb);
    if (rb.kind === 'restore') return new RestoreRunbook(this.deps, rb);
    return new FailoverRunbook(this.deps, rb);
  }

  private launchRunbook(site: string, runbook: FailoverRunbook | SwitchoverRunbook | RestoreRunbook): void {
    this.drills.preempt(`runbook #${runbook.id} of ${site} started`);
    this.monitors.get(site)?.stop();
    this.monitors.delete(site);
    this.malfunctionWatches.get(site)?.stop();
    this.malfunctionWatches.delete(site);
    const lw = this.loadWatches.get(site);
    if (lw) {
      lw.stop();
      this.loadWatches.delete(site);
      this.loadWatchHost.delete(site);
      if (lw.shedding) this.scale.noteLoad(site, null);
    }
    const p = runbook
      .run()
      .catch((e: Error) => this.log.error({ site, err: e.message }, 'runbook stopped'))
      .finally(() => {
        this.activeRunbooks.delete(site);
        if (!this.stopped) background(this.reconcileAll(), this.onBackgroundError);
      });
    this.activeRunbooks.set(site, p);
  }

  /** `understudy failover SITE [--to HOST] [--force]`: now, by hand. Resolves when the runbook ends. */
  async manualFailover(site: string, opts: { to?: string; force?: boolean }): Promise<{ runbook: number; status: string }> {
    const rec = this.store.getSite(site);
    if (!rec || !this.config.sites[site])
      throw new UnderstudyError('US_NOT_FOUND', `unknown site ${site}: the config has ${Object.keys(this.config.sites).join(', ')}`);
    if (opts.to) {
      // Checked before anything is held or fenced: a wrong --to must not take a healthy site down.
      const cfg = this.config.sites[site]!;
      const host = this.config.hosts[opts.to];
      if (!host) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${opts.to}: the config has ${Object.keys(this.config.hosts).join(', ')}`);
      if (opts.to === rec.primaryHost)
        throw new UnderstudyError('US_TARGET_INVALID', `${site} already runs on ${opts.to}: name another of its hosts with --to, or leave --to out`);
      if (![cfg.primary, ...cfg.standby].includes(opts.to))
        throw new UnderstudyError(
          'US_TARGET_INVALID',
          `${opts.to} is not one of ${site}'s hosts (primary ${cfg.primary}, standby ${cfg.standby.join(', ')}): name one of them with --to`,
        );
      if (host.storage !== rec.replicaStorage)
        throw new UnderstudyError(
          'US_NO_TARGET',
          `${opts.to} is attached to ${host.storage}, but ${site}'s replica is on ${rec.replicaStorage ?? 'no storage system (unprotected)'}`,
        );
      const held = heldElsewhere(
        this.config,
        { sites: this.store.listSites(), running: this.store.runningRunbooks(), readers: this.scale.allReaders() },
        site,
        opts.to,
        'failover',
      );
      if (held) throw new UnderstudyError('US_NO_TARGET', held);
      // Checked before the fence too: an untrusted target would be refused after it, leaving the site down.
      const trust = this.governor.trust(opts.to);
      if (!trust.trusted)
        throw new UnderstudyError(
          'US_NO_TARGET',
          `${opts.to} is not trusted yet (${trust.why}): wait until it is (understudy status shows hosts' trust), or choose another host`,
        );
    }
    if (this.activeRunbooks.has(site))
      throw new UnderstudyError('US_SITE_BUSY', `${site} already has a runbook running; watch it with understudy events --follow`);
    const now = Date.now();
    const monitor = this.monitors.get(site);
    const runbook = this.startFailover(site, {
      reason: 'operator request',
      evidence: { operator: true },
      detectedAt: now,
      lastHealthyAt: monitor?.lastHealthyAt ?? now,
      requestedTarget: opts.to,
      force: opts.force,
    });
    await this.activeRunbooks.get(site);
    const rb = this.store.listRunbooks(site).find((r) => r.id === runbook.id)!;
    return { runbook: rb.id, status: rb.status };
  }

  /**
   * `understudy switchover SITE --to HOST`: a planned move with no lost write and
   * no failed request. HOST must be one of the site's hosts, attached to the
   * storage system that holds the replica, and not the primary. Resolves when the
   * runbook ends.
   */
  async switchover(site: string, to: string): Promise<{ runbook: number; status: string }> {
    const rec = this.store.getSite(site);
    const cfg = this.config.sites[site];
    if (!rec || !cfg) throw new UnderstudyError('US_NOT_FOUND', `unknown site ${site}: the config has ${Object.keys(this.config.sites).join(', ')}`);
    const host = this.config.hosts[to];
    if (!host) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${to}: the config has ${Object.keys(this.config.hosts).join(', ')}`);
    if (this.activeRunbooks.has(site))
      throw new UnderstudyError('US_SITE_BUSY', `${site} already has a runbook running; watch it with understudy events --follow`);
    if (rec.state !== 'serving')
      throw new UnderstudyError('US_SITE_NOT_SERVING', `${site} is ${rec.state}, not serving: a switchover needs a serving primary (use failover)`);
    if (rec.primaryHost === to) throw new UnderstudyError('US_TARGET_INVALID', `${site} already runs on ${to}: name another of its hosts with --to`);
    if (![cfg.primary, ...cfg.standby].includes(to))
      throw new UnderstudyError(
        'US_TARGET_INVALID',
        `${to} is not one of ${site}'s hosts (primary ${cfg.primary}, standby ${cfg.standby.join(', ')}): name one of them with --to`,
      );
    if (!rec.replicaStorage || host.storage !== rec.replicaStorage) {
      throw new UnderstudyError(
        'US_NO_TARGET',
        `${to} is attached to ${host.storage}, but ${site}'s replica is on ${rec.replicaStorage ?? 'no storage system (unprotected)'}: choose a host attached to it`,
      );
    }
    const held = heldElsewhere(
      this.config,
      { sites: this.store.listSites(), running: this.store.runningRunbooks(), readers: this.scale.allReaders() },
      site,
      to,
      'switchover',
    );
    if (held) throw new UnderstudyError('US_NO_TARGET', held);
    const vol = this.volumeStatus(this.config.hosts[rec.primaryHost]!.storage, site);
    if (vol?.replication?.state !== 'streaming') {
      throw new UnderstudyError(
        'US_NOT_REPLICATING',
        `${site}'s replication to ${rec.replicaStorage} is ${vol?.replication?.state ?? 'unknown'}, not streaming: wait until it streams (understudy status)`,
      );
    }
    if (this.relay.status(to).power === 'off') {
      throw new UnderstudyError('US_NO_TARGET', `${to} is powered off: power it on first (understudy power ${to} on)`);
    }
    const data: SwitchoverData = { oldPrimary: rec.primaryHost, oldEpoch: rec.epoch, target: to, newEpoch: rec.epoch + 1 };
    const rb = this.store.startRunbook(site, 'switchover', data);
    this.store.addEvent({
      site,
      host: to,
      kind: 'switchover-started',
      message: `${site}: switchover #${rb.id} from ${rec.primaryHost} to ${to} started`,
      data: { runbook: rb.id },
    });
    this.launchRunbook(site, new SwitchoverRunbook(this.deps, rb));
    await this.activeRunbooks.get(site);
    const done = this.store.listRunbooks(site).find((r) => r.id === rb.id)!;
    return { runbook: done.id, status: done.status };
  }

  /** Called by the director when it could not connect to an upstream. */
  signal(s: ConnErrorSignal): void {
    for (const m of this.monitors.values()) {
      if (m.target.site === s.site) m.connErrorSignalled();
    }
  }

  async power(host: string, action: 'on' | 'off' | 'status'): Promise<RelayStatus> {
    if (!this.config.hosts[host])
      throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: the config has ${Object.keys(this.config.hosts).join(', ')}`);
    if (action === 'status') return this.relay.status(host);
    const s = action === 'on' ? await this.relay.on(host) : await this.relay.off(host);
    this.store.addEvent({ site: null, host, kind: `power-${action}`, message: `${host} powered ${action} by an operator`, data: {} });
    return s;
  }

  // ------------------------------------------------------------------ status
  private async pollStorage(): Promise<void> {
    await Promise.all(
      Object.keys(this.config.storage).map(async (name) => {
        try {
          const st = await this.clients.storageStatus(name, 500);
          this.storageStatus.set(name, st);
          for (const v of st.volumes) {
            this.noticeVerification(name, v);
            const rec = this.store.getSite(v.site);
            this.databaseWatch.notice(name, v, !!rec && this.config.hosts[rec.primaryHost]?.storage === name);
          }
        } catch {
          this.storageStatus.set(name, null);
        }
      }),
    );
  }

  private readonly lastVerification = new Map<string, boolean>();
  /** Events about databases that are not replicated, or replicated by snapshots. */
  private readonly databaseWatch = new DatabaseWatch((e) => this.store.addEvent(e));

  /**
   * A verification that fails raises an event at once (and one when the copy is good
   * again); a corrupt primary copy is then replaced (onPrimaryCorrupt).
   */
  private noticeVerification(storage: string, v: VolumeStatus): void {
    if (!v.verification) return;
    const key = `${storage}/${v.site}`;
    const before = this.lastVerification.get(key);
    this.lastVerification.set(key, v.verification.ok);
    if (before === v.verification.ok || (before === undefined && v.verification.ok)) return;
    if (!v.verification.ok) {
      const problems = v.verification.problems.map((p) => `${p.file}: ${p.kind}${p.detail ? ` (${p.detail})` : ''}`).join('; ');
      this.store.addEvent({
        site: v.site,
        host: null,
        kind: 'corruption-detected',
        message: `the ${v.role} copy of ${v.site} on ${storage} failed verification: ${problems}`,
        data: { storage, role: v.role, verification: v.verification },
      });
      if (v.role === 'primary') this.onPrimaryCorrupt(v.site, storage);
    } else {
      this.store.addEvent({
        site: v.site,
        host: null,
        kind: 'verification-ok',
        message: `the ${v.role} copy of ${v.site} on ${storage} verifies again`,
        data: { storage, role: v.role },
      });
    }
  }

  /**
   * `understudy restore SITE [--at TIME] [--to HOST]`, and the automatic response to a
   * primary copy that fails verification while no good replica exists. The target is
   * HOST, else the first of the site's hosts attached to another (non-vault) storage
   * system than the damaged copy's, else the primary host itself. Resolves when the
   * runbook ends.
   */
  async restore(site: string, opts: { at?: number; to?: string; reason?: string }): Promise<{ runbook: number; status: string }> {
    const rec = this.store.getSite(site);
    const cfg = this.config.sites[site];
    if (!rec || !cfg) throw new UnderstudyError('US_NOT_FOUND', `unknown site ${site}: the config has ${Object.keys(this.config.sites).join(', ')}`);
    if (!cfg.volume.backup) throw new UnderstudyError('US_NOT_CONFIGURED', `${site} has no backups to restore: set sites.${site}.volume.backup`);
    if (this.activeRunbooks.has(site))
      throw new UnderstudyError('US_SITE_BUSY', `${site} already has a runbook running; watch it with understudy events --follow`);
    if (opts.to && ![cfg.primary, ...cfg.standby].includes(opts.to))
      throw new UnderstudyError(
        'US_TARGET_INVALID',
        `${opts.to} is not one of ${site}'s hosts (primary ${cfg.primary}, standby ${cfg.standby.join(', ')}): name one of them with --to`,
      );
    if (opts.at !== undefined && !Number.isFinite(opts.at)) throw new UnderstudyError('US_BAD_REQUEST', '--at must be a time like 2026-11-25T06:00:00Z');
    const damaged = this.config.hosts[rec.primaryHost]!.storage;
    // A host another site holds (its primary, a runbook's target or a reader) is not restored onto (shared pools: spare-pool.ts).
    const pool = { sites: this.store.listSites(), running: this.store.runningRunbooks(), readers: this.scale.allReaders() };
    if (opts.to) {
      const held = heldElsewhere(this.config, pool, site, opts.to, 'switchover');
      if (held) throw new UnderstudyError('US_NO_TARGET', held);
    }
    const hosts = [cfg.primary, ...cfg.standby].map((h) => this.config.hosts[h]!).filter((h) => !heldElsewhere(this.config, pool, site, h.name, 'switchover'));
    const target =
      opts.to ??
      hosts.find((h) => h.storage !== damaged && !this.config.storage[h.storage]!.backup && this.relay.status(h.name).power === 'on')?.name ??
      hosts.find((h) => h.storage !== damaged && !this.config.storage[h.storage]!.backup)?.name ??
      rec.primaryHost;
    const data: RestoreData = {
      oldPrimary: rec.primaryHost,
      oldEpoch: rec.epoch,
      target,
      newEpoch: rec.epoch + 1,
      vault: cfg.volume.backup.to,
      reason: opts.reason ?? 'operator request',
      startedAt: Date.now(),
      ...(opts.at !== undefined ? { at: opts.at } : {}),
    };
    const rb = this.store.startRunbook(site, 'restore', data);
    this.store.addEvent({
      site,
      host: target,
      kind: 'restore-started',
      message: `${site}: restore #${rb.id} from ${data.vault} onto ${target} started (${data.reason})`,
      data: { runbook: rb.id },
    });
    this.launchRunbook(site, new RestoreRunbook(this.deps, rb));
    await this.activeRunbooks.get(site);
    const done = this.store.listRunbooks(site).find((r) => r.id === rb.id)!;
    return { runbook: done.id, status: done.status };
  }

  /**
   * The primary copy failed verification: fail over to the replica if its last
   * verification was good, else restore the newest good restore point. Once per
   * episode, never while a runbook runs, and rate-limited like any automatic action.
   */
  private onPrimaryCorrupt(site: string, storage: string): void {
    const rec = this.store.getSite(site);
    const cfg = this.config.sites[site];
    if (!rec || !cfg || rec.state !== 'serving' || this.activeRunbooks.has(site)) return;
    if (this.config.hosts[rec.primaryHost]!.storage !== storage) return;
    // Rate-limited like any automatic failover (the restore shares the failover cooldown).
    if (
      !this.governor.decide(site, 'failover', `the primary copy of ${site} on ${storage} is corrupt`, {
        failover: { from: rec.primaryHost, hardEvidence: false, targets: [] },
      }).allowed
    )
      return;
    const replica = rec.replicaStorage ? this.volumeStatus(rec.replicaStorage, site) : undefined;
    const replicaGood = replica?.verification?.ok === true;
    if (replicaGood) {
      const now = Date.now();
      this.startFailover(site, {
        reason: `the primary copy on ${storage} is corrupt; the replica on ${rec.replicaStorage} verifies`,
        evidence: { corruption: storage },
        detectedAt: now,
        lastHealthyAt: now,
      });
    } else if (cfg.volume.backup) {
      void this.restore(site, { reason: `the primary copy on ${storage} is corrupt and no verified replica exists` }).catch((e: Error) =>
        this.log.error({ site, err: e.message }, 'automatic restore failed'),
      );
    }
  }

  /** `understudy backups SITE`: the site's restore points in its vault, newest first. */
  async backups(site: string): Promise<{ vault: string; points: VaultPoint[] }> {
    const cfg = this.config.sites[site];
    if (!cfg) throw new UnderstudyError('US_NOT_FOUND', `unknown site ${site}: the config has ${Object.keys(this.config.sites).join(', ')}`);
    if (!cfg.volume.backup)
      throw new UnderstudyError('US_NOT_CONFIGURED', `${site} has no backups: set sites.${site}.volume.backup: { to: VAULT, every: 30s, keep: 20 }`);
    const vault = cfg.volume.backup.to;
    const points = await callJson<VaultPoint[]>(`${this.clients.storageUrl(vault)}/v1/vault/${site}/points`, { timeoutMs: 5000 });
    return { vault, points };
  }

  volumeStatus(storage: string, site: string): VolumeStatus | undefined {
    return this.storageStatus.get(storage)?.volumes.find((v) => v.site === site);
  }

  async status(): Promise<StatusView> {
    return buildStatus({
      config: this.config,
      trust: (h) => this.governor.trust(h),
      sites: this.store.listSites(),
      relay: this.relay,
      monitors: this.monitors,
      volume: (storage, site) => this.volumeStatus(storage, site),
      storageUp: (storage) => !!this.storageStatus.get(storage),
      readers: (site) => this.scale.readerStatus(site),
      next: (rec) => {
        const facts = {
          ...placementFacts({ ...this.deps, storageUp: (s) => !!this.storageStatus.get(s) }),
          powered: (h: string) => this.relay.status(h).power === 'on',
        };
        return nextTakeover(this.config, this.config.sites[rec.site]!, rec, facts);
      },
    });
  }
}

export { sleep };
