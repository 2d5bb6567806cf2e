import type { UnderstudyConfig } from '../config/types.ts';
import type { StateStore } from '../state/state-store.ts';
import { appEndpoint, siteProbe } from '../controller/site-facts.ts';

const EVERY_MS = 1000;

/**
 * Finds a site's app answering on a host that is not the site's primary: an old
 * primary whose app came back by itself (restarted outside Understudy). Such an
 * app is never routed (the director takes routes only from the controller, at the
 * current epoch) and its storage never ships (the copy it writes was demoted), but
 * the operator must know: the event says where it runs and that its writes stay on
 * its own stale copy. One event when it appears, one when it is gone.
 */
export class StaleAppWatch {
  private timer: NodeJS.Timeout | null = null;
  private readonly seen = new Set<string>();
  private running = false;

  /** @param isReader issue 5: a host lent to the site as a reader answers on purpose (read-only): not stale. */
  constructor(private readonly config: UnderstudyConfig, private readonly store: StateStore, private readonly isReader: (site: string, host: string) => boolean = () => false) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), EVERY_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const rec of this.store.listSites()) {
        const cfg = this.config.sites[rec.site];
        if (!cfg || rec.state !== 'serving') continue;
        for (const hostName of new Set([cfg.primary, ...cfg.standby])) {
          // Every host but the primary, powered by us or not: a host that rebooted by itself is exactly the case.
          if (hostName === rec.primaryHost || this.isReader(rec.site, hostName)) continue;
          const host = this.config.hosts[hostName]!;
          const key = `${rec.site}@${hostName}`;
          const probe = siteProbe(host, cfg, 300);
          const r = await probe.run();
          await probe.close();
          if (r.ok && !this.seen.has(key)) {
            this.seen.add(key);
            this.store.addEvent({
              site: rec.site, host: hostName, kind: 'stale-primary',
              message: `${rec.site} answers on ${hostName} (${appEndpoint(host, cfg)}) outside Understudy, but its primary is ${rec.primaryHost} at epoch ${rec.epoch}: it is not routed, nothing it writes is replicated (its copy on ${host.storage} was demoted); stop it`,
              data: { epoch: rec.epoch, primary: rec.primaryHost, storage: host.storage },
            });
          } else if (!r.ok && this.seen.delete(key)) {
            this.store.addEvent({ site: rec.site, host: hostName, kind: 'stale-primary-gone', message: `${rec.site} no longer answers on ${hostName}`, data: {} });
          }
        }
      }
    } finally {
      this.running = false;
    }
  }
}
