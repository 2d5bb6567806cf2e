import type { UnderstudyConfig } from '../config/types.ts';
import type { StateStore } from '../state/state-store.ts';
import { appEndpoint, siteProbe } from './site-facts.ts';
import type { ListenerLookup, ListenerOwner } from '../hosts/local-listeners.ts';
import { background } from '../shared/background.ts';
import { loopBudget } from '../shared/loop-budget.ts';

const EVERY_MS = 1000;
/**
 * Probes a pass sends at most. Where sites are few, each is looked at every second;
 * with many, a pass goes on from where the last one stopped, so the cost stays flat
 * (a thousand sites: each every ~10 s). A stale app is for the operator to stop, not
 * an emergency.
 */
const MAX_PROBES_PER_PASS = 100;

/**
 * Finds a site's app answering on a host that is not the site's primary: an old
 * primary whose app came back by itself (restarted outside Understudy). Such an
 * app is never routed (the director takes routes only from the controller, at the
 * current epoch) and its storage never ships (the copy it writes was demoted), but
 * the operator must know: the event says where it runs and that its writes stay on
 * its own stale copy. One event when it appears, one when it is gone.
 *
 * What answers on an address is not who answers: on the embedded default every
 * host's address is on the same machine, so an app bound to all addresses
 * (`0.0.0.0`) answers on every host's address. Who answers is decided by the
 * process that owns the listening socket (the host driver's ListenerLookup): the
 * primary's own app, or a reader's, is never stale, wherever it answers. Such an
 * app gets one `app-listens-on-all-addresses` warning per site, saying how to
 * bind it to its host. Where the driver cannot tell, the host whose address
 * answered is assumed.
 */
export class StaleAppWatch {
  private timer: NodeJS.Timeout | null = null;
  private readonly seen = new Set<string>();
  /** Sites already warned that their app listens on all addresses. */
  private readonly warned = new Set<string>();
  /**
   * Site → the epoch at which its primary's listener was last judged: judged once per
   * epoch (reading the machine's socket table per site and pass would cost more than
   * everything else this watch does).
   */
  private readonly listenerJudged = new Map<string, number>();
  /** Where the next pass starts in the list of sites. */
  private cursor = 0;
  private running = false;

  /**
   * @param isReader a host lent to the site as a reader answers on purpose (read-only): not stale.
   * @param listeners who owns the socket that answers on an address (the host driver).
   */
  constructor(
    private readonly config: UnderstudyConfig,
    private readonly store: StateStore,
    private readonly isReader: (site: string, host: string) => boolean = () => false,
    private readonly listeners: ListenerLookup | null = null,
  ) {}

  start(): void {
    this.timer = setInterval(() => background(this.tick()), EVERY_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One pass over every serving site (also what the timer runs). */
  async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const sites = this.store.listSites();
      let probes = 0;
      let looked = 0;
      const spent = loopBudget();
      for (; looked < sites.length && probes < MAX_PROBES_PER_PASS; looked++) {
        await spent();
        const rec = sites[(this.cursor + looked) % sites.length]!;
        const cfg = this.config.sites[rec.site];
        if (!cfg || rec.state !== 'serving') continue;
        this.warnIfAllAddresses(rec.site, rec.primaryHost, rec.epoch);
        for (const hostName of new Set([cfg.primary, ...cfg.standby])) {
          // Every host but the primary, powered by us or not: a host that rebooted by itself is exactly the case.
          if (hostName === rec.primaryHost || this.isReader(rec.site, hostName)) continue;
          const host = this.config.hosts[hostName]!;
          const key = `${rec.site}@${hostName}`;
          // Where the host driver can tell that nothing listens there, nothing answers: no probe.
          const listening = this.listeners?.whoListens(host.address, cfg.app.port);
          let r: { ok: boolean };
          if (listening?.kind === 'nobody') r = { ok: false };
          else {
            const probe = siteProbe(host, cfg, 300);
            probes++;
            r = await probe.run();
            await probe.close();
          }
          const owner = r.ok ? this.owner(host.address, cfg.app.port) : null;
          // Answered by the primary's own process, or a reader's (bound to all addresses): not stale.
          const ours = owner?.kind === 'host' && (owner.host === rec.primaryHost || this.isReader(rec.site, owner.host));
          const stale = r.ok && owner?.kind !== 'nobody' && !ours;
          if (stale && !this.seen.has(key)) {
            this.seen.add(key);
            const who =
              owner?.kind === 'outside'
                ? `by a process outside Understudy${owner.process ? ` (${owner.process})` : ''}`
                : owner?.kind === 'host'
                  ? `by a process of host ${owner.host}, outside what Understudy started there`
                  : 'outside Understudy';
            this.store.addEvent({
              site: rec.site,
              host: hostName,
              kind: 'stale-primary',
              message: `${rec.site} answers on ${hostName} (${appEndpoint(host, cfg)}) ${who}, but its primary is ${rec.primaryHost} at epoch ${rec.epoch}: it is not routed, nothing it writes is replicated (its copy on ${host.storage} was demoted); stop it`,
              data: { epoch: rec.epoch, primary: rec.primaryHost, storage: host.storage, owner },
            });
          } else if (!stale && this.seen.delete(key)) {
            this.store.addEvent({
              site: rec.site,
              host: hostName,
              kind: 'stale-primary-gone',
              message: `${rec.site} no longer answers on ${hostName}`,
              data: {},
            });
          }
        }
      }
      this.cursor = sites.length === 0 ? 0 : (this.cursor + looked) % sites.length;
    } finally {
      this.running = false;
    }
  }

  private owner(address: string, port: number): ListenerOwner {
    return this.listeners?.whoListens(address, port) ?? { kind: 'unknown', why: 'no host driver to ask' };
  }

  /** One warning per site when its primary's app listens on all addresses. */
  private warnIfAllAddresses(site: string, primary: string, epoch: number): void {
    if (this.warned.has(site) || !this.listeners || this.listenerJudged.get(site) === epoch) return;
    const cfg = this.config.sites[site]!;
    const host = this.config.hosts[primary]!;
    const owner = this.listeners.whoListens(host.address, cfg.app.port);
    // Judged once something listens there; while nothing does (starting) or the driver cannot tell, asked again.
    if (owner.kind === 'host' || owner.kind === 'outside') this.listenerJudged.set(site, epoch);
    if (owner.kind !== 'host' || owner.host !== primary || !owner.allAddresses) return;
    this.warned.add(site);
    const others = [cfg.primary, ...cfg.standby].filter((h) => h !== primary).map((h) => `${h} ${this.config.hosts[h]!.address}`);
    this.store.addEvent({
      site,
      host: primary,
      kind: 'app-listens-on-all-addresses',
      message: `${site}'s app on ${primary} listens on all addresses (${owner.bound}:${cfg.app.port}), so on this machine it also answers on the other hosts' addresses${others.length ? ` (${others.join(', ')})` : ''}, and a reader or a stale copy cannot listen there beside it. Bind it to its host: pass {{host.address}} in sites.${site}.app.command or app.env (e.g. HOST: "{{host.address}}"), or set it in its config file with a transform. Understudy tells who answers by the process that listens, so this raises no stale-primary`,
      data: { bound: owner.bound, port: cfg.app.port },
    });
  }
}
