import type pino from 'pino';
import type { UnderstudyConfig } from '../config/types.ts';
import { probeDetection, type Detection } from '../monitor/detection.ts';
import { LoadWatch, type LoadEpisode } from '../monitor/load-watch.ts';
import { MalfunctionWatch } from '../monitor/malfunction-watch.ts';
import { SiteMonitor, type FailureEvidence } from '../monitor/site-monitor.ts';
import { isProcessAlive } from '../power/process-group.ts';
import type { RelayDriver } from '../power/relay.ts';
import type { ConnErrorSignal, SiteStats } from '../shared/contracts.ts';
import { background } from '../shared/background.ts';
import type { StateStore } from '../state/state-store.ts';
import { MalfunctionTriage } from './malfunction-triage.ts';
import type { ScaleController } from './scale-controller.ts';
import { appEndpoint } from './site-facts.ts';

export interface PrimaryWatchesDeps {
  config: UnderstudyConfig;
  store: StateStore;
  relay: RelayDriver;
  log: pino.Logger;
  scale: Pick<ScaleController, 'noteLoad' | 'readerEndpoints' | 'readers'>;
  /** Every probe answer of a primary (host trust counts them). */
  onProbe: (host: string, ok: boolean) => void;
  /** A detection the controller acts on (AutoFailover decides whether a failover starts now). */
  act: (site: string, host: string, d: Detection) => void;
  stopped: () => boolean;
  onError: (err: unknown) => void;
}

/**
 * What watches each site's primary: its site monitor (process, probes, the director's
 * refused connections), its malfunction watch (error rate of real traffic, probe
 * content), and its load watch (the app shedding load). A detection is classified
 * (crash, hang, malfunction); a malfunction is first judged (malfunction-triage.ts:
 * are the errors the host's?) and acted on only when they are. The watches of a site
 * end when it is acted on or a runbook takes it; the reconcile loop starts fresh ones
 * (`ensure`) while the site serves.
 */
export class PrimaryWatches {
  private readonly monitors = new Map<string, SiteMonitor>();
  /** Per site, the malfunction detector of its current primary (fed by the director's stats and the monitor's probes). */
  private readonly malfunctionWatches = new Map<string, MalfunctionWatch>();
  /** Per site, whether its app says it sheds load (429, 503 with Retry-After): fed like the malfunction watch. */
  private readonly loadWatches = new Map<string, { watch: LoadWatch; host: string }>();
  /** Whose a malfunction's errors are (the host's, the request's, the app's) before any failover for it. */
  readonly triage: MalfunctionTriage;
  /** Sites whose malfunction is being judged now (one judgement at a time per site). */
  private readonly triaging = new Set<string>();

  constructor(private readonly deps: PrimaryWatchesDeps) {
    this.triage = new MalfunctionTriage({
      addEvent: (e) => {
        deps.store.addEvent(e);
      },
      others: (site) => {
        const cfg = deps.config.sites[site]!;
        return deps.scale.readers
          .of(site)
          .filter((r) => r.state === 'serving')
          .map((r) => ({ host: r.host, endpoint: appEndpoint(deps.config.hosts[r.host]!, cfg) }));
      },
    });
  }

  /** The director's stats snapshot, by site, for every malfunction and load watch (each gets its own site's entry). */
  observeStats(bySite: ReadonlyMap<string, SiteStats>): void {
    const own = (site: string): SiteStats[] => {
      const s = bySite.get(site);
      return s ? [s] : [];
    };
    for (const [site, w] of this.malfunctionWatches) w.observeStats(own(site));
    for (const [site, { watch }] of this.loadWatches) watch.observeStats(own(site));
  }

  /** The site's monitor, if one watches it now. */
  monitor(site: string): SiteMonitor | undefined {
    return this.monitors.get(site);
  }

  /** Every site monitor, by site (status shows their probes). */
  get allMonitors(): ReadonlyMap<string, SiteMonitor> {
    return this.monitors;
  }

  /** The site's malfunction watch, if one watches it now. */
  malfunctionWatch(site: string): MalfunctionWatch | undefined {
    return this.malfunctionWatches.get(site);
  }

  /** The hosts a site monitor watches as primary. */
  monitoredHosts(): string[] {
    return [...this.monitors.values()].map((m) => m.target.host);
  }

  /** Called by the director when it could not connect to an upstream: the site's monitor probes at once. */
  signal(s: ConnErrorSignal): void {
    for (const m of this.monitors.values()) {
      if (m.target.site === s.site) m.connErrorSignalled();
    }
  }

  /** Watches `hostName` as the site's primary (its app probed at `url`); nothing changes when it already does. */
  ensure(site: string, hostName: string, url: string): void {
    const existing = this.monitors.get(site);
    if (existing && existing.target.host === hostName) return;
    existing?.stop();
    const { config, relay } = this.deps;
    const cfg = config.sites[site]!;
    const m = new SiteMonitor(
      { site, host: hostName, url, pid: relay.status(hostName).pid },
      cfg.health.probe,
      (e) => this.onPrimaryFailure(site, hostName, e),
      (r) => {
        this.deps.onProbe(hostName, r.ok);
        this.malfunctionWatches.get(site)?.observeProbe(r);
        this.loadWatches.get(site)?.watch.observeProbe(r);
      },
    );
    this.monitors.set(site, m);
    // A malfunction watch of this primary that was not acted on (its errors were not the
    // host's) is kept with what it learnt; any other is replaced by a fresh one.
    if (this.malfunctionWatches.get(site)?.target.host !== hostName) {
      this.malfunctionWatches.get(site)?.stop();
      const w = new MalfunctionWatch(
        { site, host: hostName, upstream: appEndpoint(config.hosts[hostName]!, cfg) },
        cfg.health.malfunction,
        () => this.monitors.get(site)?.lastHealthyAt ?? Date.now(),
        (d) => this.onDetection(site, hostName, d),
      );
      this.malfunctionWatches.set(site, w);
    }
    this.ensureLoadWatch(site, hostName);
    m.start();
  }

  /** A runbook takes the site: every watch of it ends (an open load episode is cleared). */
  release(site: string): void {
    this.stopMonitor(site);
    this.malfunctionWatches.get(site)?.stop();
    this.malfunctionWatches.delete(site);
    const lw = this.loadWatches.get(site);
    if (lw) {
      lw.watch.stop();
      this.loadWatches.delete(site);
      if (lw.watch.shedding) this.deps.scale.noteLoad(site, null);
    }
  }

  stopAll(): void {
    for (const w of this.malfunctionWatches.values()) w.stop();
    this.malfunctionWatches.clear();
    for (const { watch } of this.loadWatches.values()) watch.stop();
    this.loadWatches.clear();
    for (const m of this.monitors.values()) m.stop();
    this.monitors.clear();
  }

  private stopMonitor(site: string, host?: string): void {
    const m = this.monitors.get(site);
    if (m && (host === undefined || m.target.host === host)) {
      m.stop();
      this.monitors.delete(site);
    }
  }

  /**
   * The site's load watch follows its primary: a new primary starts a new one (an
   * episode still open on the old one is cleared, so the scale controller never
   * keeps a stale reason to scale).
   */
  private ensureLoadWatch(site: string, hostName: string): void {
    const old = this.loadWatches.get(site);
    if (old && old.host === hostName) return;
    if (old) {
      old.watch.stop();
      if (old.watch.shedding) this.deps.scale.noteLoad(site, null);
    }
    const { config, scale } = this.deps;
    const cfg = config.sites[site]!;
    const watch = new LoadWatch(
      site,
      { windowMs: cfg.health.malfunction.windowMs, probeFall: cfg.health.probe.fall },
      () => [appEndpoint(config.hosts[hostName]!, cfg), ...scale.readerEndpoints(site)],
      (e) => this.onLoadEpisode(site, hostName, e),
    );
    this.loadWatches.set(site, { watch, host: hostName });
  }

  /** The app sheds load (or stopped): an event, and a reason to scale reads out where the site may. Never a failover. */
  private onLoadEpisode(site: string, host: string, e: LoadEpisode): void {
    const { config, store, scale } = this.deps;
    const cfg = config.sites[site]!;
    if (e.kind === 'load-shedding') {
      const response =
        cfg.scale.max > 1 && cfg.volume.readonly.length > 0
          ? `adding read-only hosts (up to ${cfg.scale.max} in all)`
          : "none possible here (scale.max 1 or no volume.readonly); raise the app's limit or give its host more capacity";
      store.addEvent({
        site,
        host,
        kind: 'load-shedding',
        message: `${site}: load on ${host}: ${e.reason}. A sign of load, not a failure: no failover, no fencing. Response: ${response}`,
        data: { ...e.evidence, detectedAt: e.at },
      });
      scale.noteLoad(site, { reason: `load: ${e.reason}`, since: e.at, evidence: e.evidence });
    } else {
      store.addEvent({ site, host, kind: 'load-shedding-cleared', message: `${site}: ${e.reason}`, data: { ...e.evidence } });
      scale.noteLoad(site, null);
    }
  }

  /** The site monitor raised: what kind of failure, from the evidence and the process's liveness (crash, hang, malfunction …). */
  private onPrimaryFailure(site: string, host: string, e: FailureEvidence): void {
    const pid = this.deps.relay.status(host).pid;
    const processAlive = e.kind === 'process-gone' ? false : pid === null ? null : isProcessAlive(pid);
    this.onDetection(site, host, probeDetection(e, processAlive));
  }

  /** Any detector raised against the primary: a malfunction is judged first, anything else acted on. */
  private onDetection(site: string, host: string, d: Detection): void {
    if (d.failure === 'malfunction') {
      background(this.judgeMalfunction(site, host, d), this.deps.onError);
      return;
    }
    this.actOn(site, host, d);
  }

  /**
   * A malfunction is acted on only when its errors are the host's (malfunction-triage.ts):
   * not when they follow the request, and not a second time in one incident.
   */
  private async judgeMalfunction(site: string, host: string, d: Detection): Promise<void> {
    if (this.triaging.has(site)) {
      // Judged already: a site monitor that raised meanwhile has stopped, so the reconcile loop starts a fresh one.
      if (d.source === 'probe') this.stopMonitor(site, host);
      return;
    }
    this.triaging.add(site);
    try {
      const cfg = this.deps.config.sites[site]!;
      const monitor = this.monitors.get(site);
      const watch = this.malfunctionWatches.get(site);
      const verdict = await this.triage.triage({
        site,
        host,
        endpoint: appEndpoint(this.deps.config.hosts[host]!, cfg),
        detection: d,
        watch: watch?.target.host === host ? watch : undefined,
        lastProbe: monitor?.target.host === host ? monitor.lastProbe : null,
        windowMs: cfg.health.malfunction.windowMs,
        probeTimeoutMs: cfg.health.probe.timeoutMs,
      });
      if (this.deps.stopped()) return;
      if (verdict.act === 'fail-over') {
        this.actOn(site, host, verdict.detection);
        return;
      }
      // Not acted on. A site monitor that raised has stopped: the reconcile loop starts a fresh one.
      if (d.source === 'probe') this.stopMonitor(site, host);
    } catch (e) {
      this.deps.log.warn({ site, err: (e as Error).message }, 'malfunction judgement failed; acting on the detection');
      this.actOn(site, host, d);
    } finally {
      this.triaging.delete(site);
    }
  }

  /** The primary's monitor and malfunction watch end (the reconcile loop starts fresh ones while it still serves there); the controller acts. */
  private actOn(site: string, host: string, d: Detection): void {
    this.stopMonitor(site, host);
    if (this.malfunctionWatches.get(site)?.target.host === host) {
      this.malfunctionWatches.get(site)!.stop();
      this.malfunctionWatches.delete(site);
    }
    this.deps.act(site, host, d);
  }
}
