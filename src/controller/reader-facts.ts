import path from 'node:path';
import type { HostConfig, SiteConfig, UnderstudyConfig } from '../config/types.ts';
import type { StartAppRequest } from '../shared/contracts.ts';
import { readerCopyPath } from '../storage/reader-copies.ts';
import { appEndpoint, appLaunch } from './site-facts.ts';

/** Facts derived from the config about a site's reader on a host. */

/** The reader copy the app serves on `host` (its storage system's `readers/<site>`). */
export function readerDataDir(config: UnderstudyConfig, host: HostConfig, site: string): string {
  return path.resolve(config.baseDir, readerCopyPath(config.storage[host.storage]!.path, site));
}

/** The app started read-only (READ_ONLY=1) on the reader copy. */
export function readerStartRequest(config: UnderstudyConfig, host: HostConfig, site: SiteConfig, epoch: number): StartAppRequest {
  const dataDir = readerDataDir(config, host, site.name);
  const app = appLaunch(host, site, dataDir);
  return {
    epoch,
    command: app.command,
    cwd: config.baseDir,
    dataDir,
    env: { ...app.env, UNDERSTUDY_ROLE: 'reader' },
    mode: 'ro',
    listen: { address: host.address, port: site.app.port },
  };
}

export function readerEndpoint(config: UnderstudyConfig, host: string, site: SiteConfig): string {
  return appEndpoint(config.hosts[host]!, site);
}

/** May the site scale reads out at all? (a read-only portion, and room for more than the primary) */
export function canScale(site: SiteConfig): boolean {
  return site.scale.max > 1 && site.volume.readonly.length > 0;
}
