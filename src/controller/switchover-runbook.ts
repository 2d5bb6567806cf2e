import { UnderstudyError } from '../shared/errors.ts';
import { JournaledRunbook } from './journaled-runbook.ts';
import { appEndpoint, routeFor, startRequest } from './site-facts.ts';
import { TakeoverSteps } from './takeover-steps.ts';
import { sleep } from './timing.ts';

/** How long in-flight requests to the old primary may take to finish once new ones are held. */
const DRAIN_TIMEOUT_MS = 10_000;
/** How long the replica may take to confirm the last write of the stopped primary. */
const CATCH_UP_TIMEOUT_MS = 15_000;

export interface SwitchoverData extends Record<string, unknown> {
  oldPrimary: string;
  oldEpoch: number;
  target: string;
  newEpoch: number;
  heldAt?: number;
  /** When the director was routed to the target (held requests released). */
  routedAt?: number;
  newReplicaStorage?: string | null;
  transformChanges?: unknown[];
}

/**
 * The planned switchover: no lost write and no failed request. New requests are
 * held in the director; in-flight ones finish on the old primary; the old app is
 * stopped cleanly (nothing more can be written), the replica confirms everything;
 * then the replica is promoted and the site started, routed and released on the
 * target. The old host stays powered, a standby for a later failback; the new
 * replica goes where placement.ts says (a free spare first, else the old host's storage). Until the promotion nothing is lost by giving up: a failed
 * check, drain or catch-up restarts the old app and routes it again at the old
 * epoch.
 */
export class SwitchoverRunbook extends JournaledRunbook<SwitchoverData> {
  async run(): Promise<void> {
    const { store, clients, config } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = this.journal.step.bind(this.journal);
    const oldHost = config.hosts[d.oldPrimary]!;
    const siteCfg = config.sites[site]!;
    store.setSiteState(site, 'failing-over');
    let promoted = store.journalOf(this.rb.id).some((j) => j.step === 'promote' && j.phase === 'begin');

    try {
      await step('hold', async () => {
        d.heldAt = Date.now();
        await clients.putRoute({ site, epoch: d.oldEpoch, primary: null, readers: [] });
      });
      await step('drain', async () => {
        const upstream = appEndpoint(oldHost, siteCfg);
        const deadline = Date.now() + DRAIN_TIMEOUT_MS;
        while (true) {
          const stats = await clients.stats();
          const s = stats.sites.find((x) => x.site === site)?.upstreams.find((u) => u.upstream === upstream) as { inflight?: number } | undefined;
          if (!s || (s.inflight ?? 0) === 0) return { inflight: 0 };
          if (Date.now() > deadline)
            throw new UnderstudyError('US_TIMEOUT', `${s.inflight} request(s) to ${upstream} still in flight after ${DRAIN_TIMEOUT_MS} ms`);
          await sleep(5);
        }
      });
      await step('stop-old', async () => {
        await clients.stopApp(d.oldPrimary, site);
      });
      await step('catch-up', async () => {
        await clients.confirm(oldHost.storage, site, CATCH_UP_TIMEOUT_MS);
      });
      promoted = true;
      await new TakeoverSteps(this.deps, site, d.target, d.newEpoch).runJournaled(step, d.oldPrimary, d);
      await step('record', async () => {
        const heldMs = (d.routedAt ?? Date.now()) - (d.heldAt ?? Date.now());
        store.addEvent({
          site,
          host: d.target,
          kind: 'switchover-complete',
          message: `${site} switched over from ${d.oldPrimary} to ${d.target} (epoch ${d.newEpoch}); requests were held ${heldMs} ms; ${d.oldPrimary} is now a standby`,
          data: { from: d.oldPrimary, to: d.target, epoch: d.newEpoch, heldMs, replica: d.newReplicaStorage ?? null, transform: d.transformChanges ?? [] },
        });
      });
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      store.finishRunbook(this.rb.id, 'failed');
      const refused = err.code === 'US_REPLICA_CORRUPT' && store.getSite(site)?.primaryHost === d.oldPrimary;
      if (refused) {
        // The replica failed its check before promotion: nothing was promoted,
        // but the old copy was already demoted at the new epoch. It takes the primary role
        // back one epoch higher and serves again; the bad replica is overwritten by the
        // next replication generation.
        const backEpoch = d.newEpoch + 1;
        try {
          await clients.promote(oldHost.storage, site, backEpoch);
          const rec = store.getSite(site)!;
          store.putSite({ ...rec, epoch: backEpoch, primaryHost: d.oldPrimary, replicaStorage: config.hosts[d.target]!.storage });
          await clients.startApp(d.oldPrimary, site, startRequest(config, oldHost, siteCfg, backEpoch));
          await new TakeoverSteps(this.deps, site, d.oldPrimary, backEpoch).waitHealthy();
          await clients.putRoute(routeFor(config, site, d.oldPrimary, backEpoch));
          store.setSiteState(site, 'serving');
          store.addEvent({
            site,
            host: d.oldPrimary,
            kind: 'switchover-aborted',
            message: `switchover of ${site} to ${d.target} abandoned: ${err.message}; ${site} serves on ${d.oldPrimary} again at epoch ${backEpoch}, and its replica on ${config.hosts[d.target]!.storage} is rebuilt by replication`,
            data: { code: err.code, epoch: backEpoch },
          });
          throw e;
        } catch (back) {
          if (back === e) throw e;
          store.setSiteState(site, 'down');
          store.addEvent({
            site,
            host: d.oldPrimary,
            kind: 'switchover-failed',
            message: `switchover of ${site} to ${d.target} refused (${err.message}) and ${d.oldPrimary} could not take the site back: ${(back as Error).message}; restore it: understudy restore ${site}`,
            data: { code: err.code },
          });
          throw e;
        }
      }
      if (!promoted) {
        // Nothing was promoted: the old primary's copy is still the only primary. Put it back.
        await clients.startApp(d.oldPrimary, site, startRequest(config, oldHost, siteCfg, d.oldEpoch)).catch(() => undefined);
        await new TakeoverSteps(this.deps, site, d.oldPrimary, d.oldEpoch).waitHealthy().catch(() => undefined);
        await clients.putRoute(routeFor(config, site, d.oldPrimary, d.oldEpoch)).catch(() => undefined);
        store.setSiteState(site, 'serving');
        store.addEvent({
          site,
          host: d.oldPrimary,
          kind: 'switchover-aborted',
          message: `switchover of ${site} to ${d.target} abandoned before the promotion (${err.message}); ${site} serves on ${d.oldPrimary} again`,
          data: { code: err.code ?? 'US_INTERNAL' },
        });
      } else {
        store.setSiteState(site, 'down');
        store.addEvent({
          site,
          host: d.target,
          kind: 'switchover-failed',
          message: `switchover of ${site} to ${d.target} failed after the promotion: ${err.message}; the promoted copy on ${config.hosts[d.target]!.storage} is now the only current one: fix ${d.target} and restart understudy up (it starts ${site} there)`,
          data: { code: err.code ?? 'US_INTERNAL' },
        });
      }
      throw e;
    }
  }
}
