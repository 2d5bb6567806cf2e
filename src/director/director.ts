import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { endpointToString, type UnderstudyConfig } from '../config/types.ts';
import { FencingGate } from '../shared/fencing.ts';
import { createJsonServer, listen } from '../shared/http-json.ts';
import { adminRouter } from './admin-api.ts';
import { defaultLogger, type DirectorLogger } from './logger.ts';
import { DirectorMetrics } from './metrics.ts';
import { SiteProxy } from './proxy.ts';
import { RouteStore } from './route-table.ts';
import { ConnErrorSignaller } from './signals.ts';
import { UpstreamPools, type PoolOptions } from './upstream-pools.ts';
import { siteSnapshot, type DirectorSiteStats } from './upstream-stats.ts';
import { SyncBarrierClient } from './sync-barrier.ts';
import { partSecurity } from '../shared/cluster-transport.ts';
import { DrillFronts } from './drill-fronts.ts';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * The built-in network director: one front HTTP listener per site (site.front)
 * that proxies to the hosts the controller routed it to, and an admin API
 * (director.listen) through which the controller sets those routes and reads the
 * passive stats. It runs as its own process (`understudy director`) so that a
 * test can kill it like any other part.
 *
 * A site without a route, or whose route has no primary, holds its requests
 * (bounded by holdMaxRequests / holdTimeoutMs) until the controller routes it.
 */

export interface DirectorOptions {
  config: UnderstudyConfig;
  /**
   * Base URL of the controller API, for conn-error signals (several where controllers
   * elect a leader: each gets the signal, the leader acts on it); undefined = no signals.
   */
  controllerUrl?: string | string[];
  logger?: DirectorLogger;
  /** Upstream connection pool tuning (defaults suit loopback and LAN). */
  pools?: PoolOptions;
  /** How long stop() lets in-flight requests finish before cutting them. @default 2000 */
  stopGraceMs?: number;
}

export class Director {
  readonly routes: RouteStore;
  private readonly config: UnderstudyConfig;
  private readonly logger: DirectorLogger;
  private readonly pools: UpstreamPools;
  private readonly barrier = new SyncBarrierClient();
  private readonly metrics: DirectorMetrics;
  private readonly sites = new Map<string, SiteProxy>();
  private readonly fronts = new Map<string, http.Server>();
  private admin: http.Server | null = null;
  private adminAddr: AddressInfo | null = null;
  private readonly frontAddrs = new Map<string, AddressInfo>();
  private readonly stopGraceMs: number;
  /** Fronts of rehearsals (`understudy drill`), apart from the sites' own (drill-fronts.ts). */
  private readonly drills: DrillFronts;

  constructor(opts: DirectorOptions) {
    this.config = opts.config;
    this.logger = opts.logger ?? defaultLogger();
    this.stopGraceMs = opts.stopGraceMs ?? 2000;
    this.pools = new UpstreamPools(opts.pools);
    this.metrics = new DirectorMetrics(() => this.siteCounters());
    const signaller = new ConnErrorSignaller(opts.controllerUrl, this.logger);
    this.routes = new RouteStore(new Set(Object.keys(this.config.sites)));
    this.drills = new DrillFronts({ pools: this.pools, signaller, metrics: this.metrics, logger: this.logger, barrier: this.barrier });
    for (const name of Object.keys(this.config.sites)) {
      this.sites.set(
        name,
        new SiteProxy({
          site: name,
          holdMaxRequests: this.config.director.holdMaxRequests,
          holdTimeoutMs: this.config.director.holdTimeoutMs,
          pools: this.pools,
          signaller,
          metrics: this.metrics,
          logger: this.logger,
          barrier: this.barrier,
        }),
      );
    }
    this.routes.onChange((site, next) => {
      this.sites.get(site)!.setRoute(next);
      // Pools of hosts no route names any more are closed; their stats stay.
      const inUse = new Set<string>();
      for (const s of this.sites.values()) for (const u of s.upstreamsInUse()) inUse.add(u);
      for (const u of this.drills.upstreamsInUse()) inUse.add(u);
      this.pools.retain(inUse);
      const storage = new Set<string>();
      for (const r of this.routes.list()) if (r.sync) storage.add(r.sync.storageUrl);
      this.barrier.retain(storage);
    });
  }

  /**
   * Opens the admin listener and every site's front. If one cannot listen (port
   * in use: US_PORT_IN_USE naming it), those already open are closed again.
   */
  async start(): Promise<void> {
    try {
      const fencing = new FencingGate('the director', null, (token, highest, req) =>
        this.logger.warn(
          { token, highest, method: req.method, url: req.url },
          'refused a command from a controller that no longer leads (lower fencing token)',
        ),
      );
      this.admin = createJsonServer(
        adminRouter({ routes: this.routes, stats: () => this.stats(), metrics: this.metrics, drills: this.drills, fencing: () => fencing.view() }),
        null,
        { security: partSecurity(this.config, 'director'), part: 'the director', fencing },
      );
      const a = this.config.director.listen;
      this.adminAddr = await listen(this.admin, a.host, a.port);
      for (const [name, site] of Object.entries(this.config.sites)) {
        const server = http.createServer(this.sites.get(name)!.handle);
        server.keepAliveTimeout = 30_000;
        this.fronts.set(name, server);
        this.frontAddrs.set(name, await listen(server, site.front.host, site.front.port));
      }
    } catch (e) {
      await this.closeServers(0);
      throw e;
    }
    this.logger.info(
      {
        admin: this.adminUrl,
        fronts: Object.fromEntries([...this.frontAddrs].map(([s, a]) => [s, addrString(a)])),
      },
      'director listening',
    );
  }

  /** Stops accepting, answers held requests 503, lets in-flight ones finish (bounded), then closes the pools. */
  async stop(): Promise<void> {
    for (const s of this.sites.values()) s.stop();
    await this.drills.closeAll();
    await this.closeServers(this.stopGraceMs);
    await this.pools.destroyAll();
    await this.barrier.destroyAll();
    this.logger.info({}, 'director stopped');
  }

  /** The admin API's base URL (after start; useful when the config asked for port 0). */
  get adminUrl(): string {
    if (this.adminAddr === null) throw new UnderstudyError('US_INTERNAL', 'director not started');
    return `http://${addrString(this.adminAddr)}`;
  }

  /** A site's front base URL (after start). */
  frontUrl(site: string): string {
    const a = this.frontAddrs.get(site);
    if (a === undefined) throw new UnderstudyError('US_INTERNAL', `no front for site ${site}`);
    return `http://${addrString(a)}`;
  }

  stats(): DirectorSiteStats[] {
    return [...this.sites.values()].map((s) => siteSnapshot(s.site, s.epoch, s.hold.size, s.counters));
  }

  private *siteCounters(): Iterable<[string, SiteProxy['counters'], number]> {
    for (const s of this.sites.values()) yield [s.site, s.counters, s.hold.size];
  }

  private async closeServers(graceMs: number): Promise<void> {
    const servers = [...this.fronts.values(), ...(this.admin ? [this.admin] : [])];
    this.fronts.clear();
    this.admin = null;
    await Promise.all(servers.map((server) => closeServer(server, graceMs)));
  }
}

function addrString(a: AddressInfo): string {
  return endpointToString({ host: a.address, port: a.port });
}

/** Closes a server: idle keep-alive connections at once, busy ones after `graceMs`. */
function closeServer(server: http.Server, graceMs: number): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
