import { formatTransformDiff } from '../transform/diff.ts';
import type { TransformChange } from '../shared/contracts.ts';
import type { RunbookDeps } from './runbook-journal.ts';
import { replicaStorageFor } from './reprotection.ts';
import { renderedTransform, routeFor, startRequest } from './site-facts.ts';
import { waitSiteStarted } from './app-start-watch.ts';
import { waitFor } from './timing.ts';

/**
 * The steps that failover and switchover share once a replica has been promoted
 * for `target` at `epoch`: transform it for the target, start the site there,
 * wait for it, route it, re-protect it. Each is idempotent.
 */
export class TakeoverSteps {
  constructor(
    private readonly deps: RunbookDeps,
    private readonly site: string,
    private readonly target: string,
    private readonly epoch: number,
  ) {}

  private get siteCfg() {
    return this.deps.config.sites[this.site]!;
  }
  private get host() {
    return this.deps.config.hosts[this.target]!;
  }

  /**
   * Runs promote → transform → start → wait-healthy → route → reprotect as journaled
   * steps, recording their outcomes in `d`; returns when the site is routed and re-protected.
   */
  async runJournaled(
    step: (name: string, fn: () => Promise<unknown>) => Promise<void>,
    oldPrimary: string,
    d: { transformChanges?: unknown[]; routedAt?: number; newReplicaStorage?: string | null },
    opts: { promote: boolean } = { promote: true },
  ): Promise<void> {
    // A restore installs the copy itself (already primary at the new epoch): nothing to promote.
    if (opts.promote) await step('promote', () => this.promote(oldPrimary));
    await step('transform', async () => {
      d.transformChanges = await this.transform();
      return { changes: d.transformChanges };
    });
    await step('start', () => this.start());
    await step('wait-healthy', () => this.waitHealthy());
    await step('route', async () => {
      d.routedAt = await this.route();
    });
    await step('reprotect', async () => {
      d.newReplicaStorage = await this.reprotect();
      return { replica: d.newReplicaStorage };
    });
  }

  /** Promotes the replica on the target's storage at the new epoch, after telling the old copy to stop shipping. */
  async promote(oldPrimary: string): Promise<{ storage: string; epoch: number }> {
    const { clients, store } = this.deps;
    const oldStorage = this.deps.config.hosts[oldPrimary]!.storage;
    // The old copy stops shipping; unreachable is fine (its storage may be what failed).
    await clients.demote(oldStorage, this.site, this.epoch).catch(() => undefined);
    const res = await clients.promote(this.host.storage, this.site, this.epoch);
    const rec = store.getSite(this.site)!;
    store.putSite({ ...rec, epoch: this.epoch, primaryHost: this.target, replicaStorage: null });
    store.addEvent({
      site: this.site,
      host: this.target,
      kind: 'promoted',
      message: `replica on ${this.host.storage} promoted at epoch ${this.epoch}`,
      data: { storage: this.host.storage, epoch: this.epoch, lastAppliedAt: res.lastAppliedAt ?? null },
    });
    return { storage: this.host.storage, epoch: this.epoch };
  }

  async transform(): Promise<TransformChange[]> {
    const res = await this.deps.clients.transform(this.host.storage, this.site, this.epoch, renderedTransform(this.host, this.siteCfg));
    if (res.changes.length > 0) {
      this.deps.store.addEvent({
        site: this.site,
        host: this.target,
        kind: 'transformed',
        message: `${this.site}'s volume on ${this.host.storage} fitted to ${this.target}:\n${formatTransformDiff(res.changes)}`,
        data: { changes: res.changes },
      });
    }
    return res.changes;
  }

  async start(): Promise<void> {
    const { relay, clients, config } = this.deps;
    if (relay.status(this.target).power === 'off') await relay.on(this.target);
    await waitFor(() => clients.agentStatus(this.target, 300), { timeoutMs: 15_000, everyMs: 20, what: `the agent of ${this.target}` });
    await clients.startApp(this.target, this.site, startRequest(config, this.host, this.siteCfg, this.epoch));
  }

  /** Until the app answers its probe on the target; an app that exits, or never answers healthily, fails the step with its cause (app-start-watch.ts). */
  async waitHealthy(): Promise<void> {
    const { clients, config } = this.deps;
    await waitSiteStarted((h, t) => clients.agentStatus(h, t), this.host, this.siteCfg, startRequest(config, this.host, this.siteCfg, this.epoch).command, 10);
  }

  async route(): Promise<number> {
    await this.deps.clients.putRoute(routeFor(this.deps.config, this.site, this.target, this.epoch));
    const rec = this.deps.store.getSite(this.site)!;
    this.deps.store.putSite({ ...rec, state: 'serving' });
    return Date.now();
  }

  /**
   * Starts shipping the new primary to the storage system of the best host that
   * could take the site over next (placement.ts: a free spare first, the old primary
   * once it is trusted again); returns it, or null when there is none.
   */
  async reprotect(): Promise<string | null> {
    const { clients, store } = this.deps;
    let replica = replicaStorageFor(this.deps, this.site, this.target);
    if (replica) {
      try {
        await clients.replicate(this.host.storage, this.site, this.epoch, replica);
      } catch (e) {
        store.addEvent({
          site: this.site,
          host: null,
          kind: 'reprotect-failed',
          message: `could not start replicating ${this.site} to ${replica}: ${(e as Error).message}; the controller retries, the site runs unprotected until then`,
          data: { replica },
        });
        replica = null;
      }
    } else {
      store.addEvent({
        site: this.site,
        host: null,
        kind: 'unprotected',
        message: `no other storage system can hold a replica of ${this.site}; it runs unprotected`,
        data: {},
      });
    }
    const rec = store.getSite(this.site)!;
    store.putSite({ ...rec, replicaStorage: replica, state: 'serving' });
    return replica;
  }
}
