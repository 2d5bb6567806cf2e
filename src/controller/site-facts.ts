import path from 'node:path';
import type { HostConfig, SiteConfig, UnderstudyConfig } from '../config/types.ts';
import { endpointUrl } from '../config/types.ts';
import type { RouteTable, StartAppRequest } from '../shared/contracts.ts';
import { renderRules, type RenderedRule } from '../transform/render-rules.ts';
import { renderApp, type RenderedApp } from '../transform/render-app.ts';
import { createProbe, probeTarget, type AppProbe } from '../monitor/app-probe.ts';

/** Facts derived from the config about a site on a host: where its volume is, how to start it, where it answers. */

export function volumeDir(config: UnderstudyConfig, storage: string, site: string): string {
  return path.join(config.storage[storage]!.path, 'volumes', site);
}

export function appEndpoint(host: HostConfig, site: SiteConfig): string {
  return `${host.address}:${site.app.port}`;
}

/** What the site's probe calls on `host`: `http://address:port/path`, or `tcp://address:port` for a TCP probe. */
export function probeUrl(host: HostConfig, site: SiteConfig): string {
  return probeTarget(host.address, site.app.port, site.health.probe);
}

/** The site's health probe (`health.probe`) of its app on `host`. */
export function siteProbe(host: HostConfig, site: SiteConfig, timeoutMs = site.health.probe.timeoutMs): AppProbe {
  return createProbe(probeUrl(host, site), site.health.probe, timeoutMs);
}

/**
 * The app's argv and env for `host` (templates rendered, src/transform/render-app.ts),
 * with `node` as a program meaning the Node.js that runs Understudy.
 */
export function appLaunch(host: HostConfig, site: SiteConfig, dataDir: string): RenderedApp {
  const app = renderApp(host, site, dataDir);
  return { command: app.command.map((c) => (c === 'node' ? process.execPath : c)), env: app.env };
}

export function startRequest(config: UnderstudyConfig, host: HostConfig, site: SiteConfig, epoch: number): StartAppRequest {
  const dataDir = volumeDir(config, host.storage, site.name);
  const app = appLaunch(host, site, dataDir);
  return {
    epoch,
    command: app.command,
    cwd: config.baseDir,
    dataDir,
    env: app.env,
    mode: 'rw',
    listen: { address: host.address, port: site.app.port },
  };
}

export function renderedTransform(host: HostConfig, site: SiteConfig): RenderedRule[] {
  return renderRules(site.transform, { host, site });
}

/** The director's route for a site served by `host` at `epoch` (sync barrier included when the site replicates synchronously). */
export function routeFor(config: UnderstudyConfig, site: string, host: string, epoch: number): RouteTable {
  const cfg = config.sites[site]!;
  const h = config.hosts[host]!;
  const sync =
    cfg.volume.replication === 'sync' && cfg.volume.sync
      ? { storageUrl: endpointUrl(config.storage[h.storage]!.listen), onReplicaLost: cfg.volume.sync.onReplicaLost, timeoutMs: cfg.volume.sync.timeoutMs }
      : null;
  // Where read-your-writes asks whether readers caught up (sites that may scale
  // reads out), and which paths readers may serve. Readers themselves are added by the
  // scale controller (scale-controller.ts), never here.
  const ryw = cfg.scale.max > 1 && cfg.volume.readonly.length > 0 ? { storageUrl: endpointUrl(config.storage[h.storage]!.listen), timeoutMs: 5000 } : null;
  return {
    site,
    epoch,
    primary: appEndpoint(h, cfg),
    readers: [],
    sync,
    ...(cfg.scale.readPaths ? { readPaths: [...cfg.scale.readPaths] } : {}),
    ...(ryw ? { ryw } : {}),
  };
}
