import path from 'node:path';
import pino from 'pino';
import type { UnderstudyConfig } from '../config/types.ts';
import { StaleAppWatch } from './stale-app-watch.ts';
import { LocalListeners, type ListenerLookup } from '../hosts/local-listeners.ts';
import { formatTransformDiff } from '../transform/diff.ts';
import { HostRelays } from '../power/host-relays.ts';
import type { RelayDriver, RelayStatus } from '../power/relay.ts';
import type { ConnErrorSignal, RouteTable, SiteStats, VaultPoint, VolumeStatus } from '../shared/contracts.ts';
import type { ActionGovernor } from './action-governor.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { StateStore } from '../state/state-store.ts';
import { FencingRefusals } from './fencing-refusals.ts';
import { PartClients } from './clients.ts';
import { FailoverRunbook, type FailoverData, type RunbookDeps } from './failover-runbook.ts';
import { SwitchoverRunbook, type SwitchoverData } from './switchover-runbook.ts';
import { RestoreRunbook, type RestoreData } from './restore-runbook.ts';
import type { RunbookRecord } from '../state/state-store.ts';
import { appEndpoint, probeUrl, renderedTransform, routeFor, startRequest } from './site-facts.ts';
import { keepProtected, placementFacts, replicaStorageFor } from './reprotection.ts';
import { loopBudget } from '../shared/loop-budget.ts';
import { nextTakeover, type PlacementFacts } from './placement.ts';
import { waitSiteStarted } from './app-start-watch.ts';
import { buildStatus, unprotectedDatabases, type StatusView } from './status-view.ts';
import { ScaleController } from './scale-controller.ts';
import { PoolWatch } from './pool-watch.ts';
import { DirectorStatsFeed, type DirectorStatsListener } from './director-stats-feed.ts';
import { createGovernor } from './governor-setup.ts';
import { AutoFailover } from './auto-failover.ts';
import { HostTrustWatch, trustProbeEveryMs } from './host-trust-watch.ts';
import { primaryRecovered } from './primary-recovered.ts';
import { PrimaryWatches } from './primary-watches.ts';
import { checkFailoverTarget, checkSwitchover, knownSite, restoreTarget, type RequestFacts } from './manual-requests.ts';
import { StorageWatch } from './storage-watch.ts';
import { trustedCandidates } from './trusted-candidates.ts';
import { sleep, waitFor } from './timing.ts';
import { Drills } from './drills.ts';
import { background } from '../shared/background.ts';
import { eachLimited } from '../shared/each-limited.ts';
import { SingleFlight } from '../shared/single-flight.ts';

const RECONCILE_EVERY_MS = 1000;
/** Reconcile passes between two prunes of the event log (StateStore.pruneEvents). */
const PRUNE_EVERY_TICKS = 10;

/**
 * Where controllers elect a leader (controller.state.etcd): the term a Controller acts
 * in. Its store is the term's view of the state in etcd (etcd-state.ts); its token is
 * the leader lease's fencing token, null once the term ended (every command is then
 * refused before it is sent: clients.ts, host-relays.ts).
 */
export interface ControllerTerm {
  store: StateStore;
  fencingToken: () => number | null;
}
/** Sites started at the same time by `start` (each mostly waits for its app to answer). */
const SITE_STARTS_AT_ONCE = 8;

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
  /** Each primary's monitor, malfunction and load watches (primary-watches.ts). */
  private readonly watches: PrimaryWatches;
  private readonly activeRunbooks = new Map<string, Promise<void>>();
  private readonly autoFailover: AutoFailover;
  private readonly trustWatch: HostTrustWatch;
  /** Every storage processor's status, and the events it raises (storage-watch.ts). */
  private readonly storage: StorageWatch;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private readonly staleWatch: StaleAppWatch;
  /** Says when a serving site has no spare left to fail over to (pool-watch.ts). */
  private readonly poolWatch: PoolWatch;
  /** Commands of an older leader that the parts refused, as events (fencing-refusals.ts). */
  private readonly fencingRefusals: FencingRefusals;
  private reconciling = false;
  private reconcileTicks = 0;
  /** The last placement facts read, and what they were read at (placementNow). */
  private placement: { key: string; facts: PlacementFacts } | null = null;
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
    term?: ControllerTerm,
  ) {
    this.log = logger ?? pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.store = term?.store ?? new StateStore(config.controller.stateDir);
    this.fencingRefusals = new FencingRefusals((e) => this.store.addEvent(e), Date.now());
    const token = term?.fencingToken ?? (() => null);
    this.relays = new HostRelays(config, this.store, path.join(config.controller.stateDir, 'logs'), term ? () => token() !== null : undefined);
    this.relay = this.relays;
    this.clients = new PartClients(config, token, term !== undefined);
    // Embedded hosts share one network stack: who answers on an address is told by the process that listens (local-listeners.ts).
    // The socket table is read at most once a second: the stale-app watch's period (a
    // pass over many sites asks per site, and one read parses every socket of the machine).
    const local = new LocalListeners(() => Object.keys(config.hosts).map((h) => ({ host: h, group: this.store.getRelay(h)?.pgid ?? null })), 1000);
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
    this.governor = createGovernor(config, process.env, this.store);
    this.directorStats = new DirectorStatsFeed(
      async () => {
        const r = await this.clients.stats();
        for (const f of r.fencing) this.fencingRefusals.observe(f.part, null, f.view);
        return r;
      },
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
    this.watches = new PrimaryWatches({
      config,
      store: this.store,
      relay: this.relay,
      log: this.log,
      scale: this.scale,
      onProbe: (host, ok) => this.trustWatch.probe(host, ok),
      act: (site, host, d) => this.autoFailover.onDetection(site, host, d),
      stopped: () => this.stopped,
      onError: this.onBackgroundError,
    });
    this.onDirectorStats((_stats, _at, bySite) => this.watches.observeStats(bySite));
    this.storage = new StorageWatch({
      config,
      clients: this.clients,
      store: this.store,
      onPrimaryCorrupt: (site, storage) => this.onPrimaryCorrupt(site, storage),
      onStatus: (storage, st) => this.fencingRefusals.observe(`storage ${storage}`, null, st.fencing),
      onError: this.onBackgroundError,
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
            ...this.watches.monitoredHosts(),
            ...this.store
              .listSites()
              .filter((r) => r.state !== 'down')
              .map((r) => r.primaryHost),
          ]),
        powered: (h) => this.relay.status(h).power === 'on',
        agentAnswers: async (h, timeoutMs) => {
          const st = await this.clients.agentStatus(h, timeoutMs);
          this.fencingRefusals.observe(`the agent of ${h}`, h, st.fencing);
          return st;
        },
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
      recovered: (site, host, d) => primaryRecovered(d, this.watches.monitor(site), this.watches.malfunctionWatch(site), host),
      start: (site, host, d, opts) => {
        this.watches.triage.noteFailover(site, host, d, this.config.sites[site]!.health.malfunction.windowMs);
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

  /** What the checks of an operator's request read (manual-requests.ts). */
  private get requestFacts(): RequestFacts {
    return {
      config: this.config,
      store: this.store,
      governor: this.governor,
      relay: this.relay,
      readers: () => this.scale.allReaders(),
      volume: (storage, site) => this.volumeStatus(storage, site),
    };
  }

  async start(): Promise<void> {
    await this.storage.start();
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
    // New sites are recorded one after another (where a replica goes depends on the sites
    // recorded before it); then the sites start together, a few at a time: most of a start
    // is waiting for an app to answer.
    const starting: string[] = [];
    for (const site of Object.keys(this.config.sites)) {
      const rec = this.store.getSite(site);
      if (!rec) await this.bootstrapSite(site);
      if (!rec || rec.state === 'starting') starting.push(site);
    }
    await this.bootHosts();
    await eachLimited(starting, SITE_STARTS_AT_ONCE, (site) => this.startSite(site));
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
    this.storage.stop();
    this.directorStats.stop();
    this.scale.stop();
    this.staleWatch.stop();
    this.trustWatch.stop();
    this.relays.unwatch();
    this.autoFailover.stop();
    this.watches.stopAll();
    this.store.close();
  }

  // ------------------------------------------------------------------ first start of a site
  /** A site never seen before: its volume is created from the seed at epoch 1, and it is recorded `starting`. */
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
    await this.powerOnOnce(primary.name);
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

  /**
   * Powers on every host marked `boot` (primaries and warm standbys) that is off. Sites
   * start together: they share one pass, and each host is powered on once.
   */
  private bootHosts(): Promise<void> {
    return this.powerOns.run('(boot)', async () => {
      for (const h of Object.values(this.config.hosts)) {
        if (h.boot && this.relay.status(h.name).power === 'off' && this.store.getRelay(h.name) === undefined) {
          await this.powerOnOnce(h.name);
          this.store.addEvent({ site: null, host: h.name, kind: 'power-on', message: `${h.name} powered on (boot)`, data: {} });
        }
      }
    });
  }

  /** Power-ons under way, by host (and the boot pass): a second caller waits for the first, never powers on twice. */
  private readonly powerOns = new SingleFlight<string>();

  private powerOnOnce(host: string): Promise<unknown> {
    return this.powerOns.run(host, async () => {
      if (this.relay.status(host).power === 'off') await this.relay.on(host);
    });
  }

  // ------------------------------------------------------------------ reconcile
  private async reconcileAll(): Promise<void> {
    if (this.reconciling || this.stopped) return;
    this.reconciling = true;
    try {
      let routes: RouteTable[] | null = null;
      try {
        routes = await this.clients.routes();
      } catch {
        routes = null;
      }
      const routeOf = new Map((routes ?? []).map((r) => [r.site, r]));
      const spent = loopBudget();
      for (const site of Object.keys(this.config.sites)) {
        try {
          await this.reconcileSite(site, routes === null ? null : routeOf);
        } catch (e) {
          this.log.warn({ site, err: (e as Error).message }, 'reconcile failed; will retry');
        }
        await spent();
      }
      this.poolWatch.check();
      // The event log stays bounded (controller.events.keep), a small batch every ~10 s.
      if (++this.reconcileTicks % PRUNE_EVERY_TICKS === 0) this.store.pruneEvents(this.config.controller.eventsKeep);
    } finally {
      this.reconciling = false;
    }
  }

  /**
   * Level-based and idempotent: compares what is (director route, replication,
   * monitor) with what the state store says should be, and fixes the difference.
   * It never moves a primary: only a runbook does that.
   */
  private async reconcileSite(site: string, routes: ReadonlyMap<string, RouteTable> | null): Promise<void> {
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
    this.watches.ensure(site, rec.primaryHost, probeUrl(host, cfg));
    const monitor = this.watches.monitor(site);
    if (monitor?.healthy) {
      const route = routes?.get(site);
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
    const now = await keepProtected({ ...this.deps, storageUp: (s) => this.storage.up(s) }, rec, this.placementNow());
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

  // ------------------------------------------------------------------ runbooks
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
    this.watches.release(site);
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
    const rec = knownSite(this.config, this.store, site);
    if (opts.to) checkFailoverTarget(this.requestFacts, rec, opts.to);
    if (this.activeRunbooks.has(site))
      throw new UnderstudyError('US_SITE_BUSY', `${site} already has a runbook running; watch it with understudy events --follow`);
    const now = Date.now();
    const monitor = this.watches.monitor(site);
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
    const rec = knownSite(this.config, this.store, site);
    if (this.activeRunbooks.has(site))
      throw new UnderstudyError('US_SITE_BUSY', `${site} already has a runbook running; watch it with understudy events --follow`);
    checkSwitchover(this.requestFacts, rec, to);
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
    this.watches.signal(s);
  }

  async power(host: string, action: 'on' | 'off' | 'status'): Promise<RelayStatus> {
    if (!this.config.hosts[host])
      throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: the config has ${Object.keys(this.config.hosts).join(', ')}`);
    if (action === 'status') return this.relay.status(host);
    const s = action === 'on' ? await this.relay.on(host) : await this.relay.off(host);
    this.store.addEvent({ site: null, host, kind: `power-${action}`, message: `${host} powered ${action} by an operator`, data: {} });
    return s;
  }

  /**
   * `understudy restore SITE [--at TIME] [--to HOST]`, and the automatic response to a
   * primary copy that fails verification while no good replica exists. The target is
   * HOST, else the first of the site's hosts attached to another (non-vault) storage
   * system than the damaged copy's, else the primary host itself. Resolves when the
   * runbook ends.
   */
  async restore(site: string, opts: { at?: number; to?: string; reason?: string }): Promise<{ runbook: number; status: string }> {
    const rec = knownSite(this.config, this.store, site);
    const cfg = this.config.sites[site]!;
    if (!cfg.volume.backup) throw new UnderstudyError('US_NOT_CONFIGURED', `${site} has no backups to restore: set sites.${site}.volume.backup`);
    if (this.activeRunbooks.has(site))
      throw new UnderstudyError('US_SITE_BUSY', `${site} already has a runbook running; watch it with understudy events --follow`);
    const target = restoreTarget(this.requestFacts, rec, opts);
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
    const points = await this.clients.vaultPoints(vault, site);
    return { vault, points };
  }

  volumeStatus(storage: string, site: string): VolumeStatus | undefined {
    return this.storage.volume(storage, site);
  }

  // ------------------------------------------------------------------ status

  async status(): Promise<StatusView> {
    let facts: (PlacementFacts & { powered: (h: string) => boolean }) | undefined;
    // Each host's power is read once a call, however many sites name it.
    const power = new Map<string, boolean>();
    const powered = (h: string): boolean => {
      let on = power.get(h);
      if (on === undefined) {
        on = this.relay.status(h).power === 'on';
        power.set(h, on);
      }
      return on;
    };
    return buildStatus({
      config: this.config,
      trust: (h) => this.governor.trust(h),
      sites: this.store.listSites(),
      relay: this.relay,
      monitors: this.watches.allMonitors,
      volume: (storage, site) => this.volumeStatus(storage, site),
      storageUp: (storage) => this.storage.up(storage),
      readers: (site) => this.scale.readerStatus(site),
      next: (rec) => {
        facts ??= { ...this.placementNow(), powered: (h: string) => powered(h) };
        return nextTakeover(this.config, this.config.sites[rec.site]!, rec, facts);
      },
    });
  }

  /**
   * The placement facts as they are now, read again only when a site record, a runbook
   * or the lent readers changed since the last read: a reconcile pass and a status call
   * look at every site, and reading every site's record for each would cost the square
   * of the number of sites. Trust and storage health are asked live through the facts.
   */
  private placementNow(): PlacementFacts {
    const key = `${this.store.revision}|${this.scale.readers.revision}`;
    if (this.placement?.key === key) return this.placement.facts;
    const facts = placementFacts({ ...this.deps, storageUp: (s) => this.storage.up(s) });
    this.placement = { key, facts };
    return facts;
  }
}

export { sleep };
