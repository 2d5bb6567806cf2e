import type { UnderstudyConfig } from '../config/types.ts';
import type { RelayDriver } from '../power/relay.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { RunbookRecord, StateStore } from '../state/state-store.ts';
import type { PartClients } from './clients.ts';
import { appEndpoint, probeUrl, renderedTransform, replicaStorageFor, startRequest } from './site-facts.ts';
import { chooseTarget } from './target-choice.ts';
import { sleep, waitFor } from './timing.ts';
import { HttpProbe } from '../monitor/http-probe.ts';

/** What a failover runbook is given and what its steps decide; persisted with the runbook. */
export interface FailoverData extends Record<string, unknown> {
  oldPrimary: string;
  oldEpoch: number;
  reason: string;
  evidence: Record<string, unknown>;
  /** When the failure was detected (epoch ms). */
  detectedAt: number;
  /** Last time the old primary was known healthy. */
  lastHealthyAt: number;
  /** The operator's choice (`failover --to`), if any. */
  requestedTarget?: string;
  force?: boolean;
  replicationLagMsAtFailure?: number;
  target?: string;
  newEpoch?: number;
  newReplicaStorage?: string | null;
  fenceConfirmed?: boolean;
  transformChanges?: unknown[];
  servingAgainAt?: number;
}

export interface RunbookDeps {
  config: UnderstudyConfig;
  store: StateStore;
  relay: RelayDriver;
  clients: PartClients;
  log: { info: (o: object, msg: string) => void; warn: (o: object, msg: string) => void; error: (o: object, msg: string) => void };
}

/**
 * The crash-failover runbook (DESIGN.md "The failover runbook"). Each step is
 * journaled before and after it runs; a restarted controller calls `run` again on
 * the same runbook and every step whose `end` is journaled is skipped. Every step
 * is safe to run twice: the relay's off is idempotent, the storage processor
 * accepts a promote at the epoch it is already at, the agent accepts a start at the
 * epoch it already runs, the director accepts a route at the same epoch.
 */
export class FailoverRunbook {
  private readonly data: FailoverData;

  constructor(private readonly deps: RunbookDeps, private readonly rb: RunbookRecord) {
    this.data = rb.data as FailoverData;
  }

  get id(): number {
    return this.rb.id;
  }

  async run(): Promise<void> {
    const { store } = this.deps;
    const site = this.rb.site;
    const siteCfg = this.deps.config.sites[site]!;
    const done = new Set(store.journalOf(this.rb.id).filter((j) => j.phase === 'end').map((j) => j.step));
    store.setSiteState(site, 'failing-over');

    try {
      await this.step(done, 'hold', async () => {
        // New requests wait in the director instead of failing while the site moves.
        await this.deps.clients.putRoute({ site, epoch: this.data.oldEpoch, primary: null, readers: [] }).catch((e: Error) => {
          // A newer epoch already there means a later step ran: nothing to hold.
          if ((e as UnderstudyError).code !== 'US_STALE_EPOCH') throw e;
        });
      });

      await this.step(done, 'fence', async () => {
        try {
          await this.deps.relay.off(this.data.oldPrimary);
          this.data.fenceConfirmed = true;
        } catch (e) {
          if (!this.data.force) throw e;
          this.data.fenceConfirmed = false;
          this.deps.store.addEvent({ site, host: this.data.oldPrimary, kind: 'fence-forced', message: `fence of ${this.data.oldPrimary} not confirmed; going on because of --force`, data: { error: (e as Error).message } });
        }
        return { confirmed: this.data.fenceConfirmed };
      });

      await this.step(done, 'choose-target', async () => {
        const record = store.getSite(site)!;
        const target = await chooseTarget(this.deps, siteCfg, {
          failed: this.data.oldPrimary,
          replicaStorage: record.replicaStorage,
          requested: this.data.requestedTarget,
        });
        this.data.target = target;
        this.data.newEpoch = this.data.oldEpoch + 1;
        return { target, newEpoch: this.data.newEpoch };
      });

      const target = this.data.target!;
      const targetHost = this.deps.config.hosts[target]!;
      const newEpoch = this.data.newEpoch!;

      await this.step(done, 'promote', async () => {
        const oldStorage = this.deps.config.hosts[this.data.oldPrimary]!.storage;
        // The old copy stops shipping; unreachable is fine (its storage may be what failed).
        await this.deps.clients.demote(oldStorage, site, newEpoch).catch(() => undefined);
        const res = await this.deps.clients.promote(targetHost.storage, site, newEpoch);
        const rec = store.getSite(site)!;
        store.putSite({ ...rec, epoch: newEpoch, primaryHost: target, state: 'failing-over', replicaStorage: null });
        store.addEvent({ site, host: target, kind: 'promoted', message: `replica on ${targetHost.storage} promoted at epoch ${newEpoch}`, data: { storage: targetHost.storage, epoch: newEpoch, lastAppliedAt: res.lastAppliedAt ?? null } });
        return { storage: targetHost.storage, epoch: newEpoch };
      });

      await this.step(done, 'transform', async () => {
        const res = await this.deps.clients.transform(targetHost.storage, site, newEpoch, renderedTransform(targetHost, siteCfg));
        this.data.transformChanges = res.changes;
        return { changes: res.changes };
      });

      await this.step(done, 'start', async () => {
        if (this.deps.relay.status(target).power === 'off') {
          await this.deps.relay.on(target);
        }
        await waitFor(() => this.deps.clients.agentStatus(target, 300), { timeoutMs: 15_000, everyMs: 20, what: `the agent of ${target}` });
        await this.deps.clients.startApp(target, site, startRequest(this.deps.config, targetHost, siteCfg, newEpoch));
      });

      await this.step(done, 'wait-healthy', async () => {
        const probe = new HttpProbe(probeUrl(targetHost, siteCfg), siteCfg.health.probe.timeoutMs);
        try {
          await waitFor(async () => (await probe.run()).ok, { timeoutMs: 30_000, everyMs: 10, what: `${site} to answer on ${appEndpoint(targetHost, siteCfg)}` });
        } finally {
          await probe.close();
        }
      });

      await this.step(done, 'route', async () => {
        await this.deps.clients.putRoute({ site, epoch: newEpoch, primary: appEndpoint(targetHost, siteCfg), readers: [] });
        this.data.servingAgainAt = Date.now();
        const rec = store.getSite(site)!;
        store.putSite({ ...rec, state: 'serving' });
      });

      await this.step(done, 'reprotect', async () => {
        const replica = replicaStorageFor(this.deps.config, siteCfg, targetHost.storage);
        this.data.newReplicaStorage = replica;
        if (replica) {
          try {
            await this.deps.clients.replicate(targetHost.storage, site, newEpoch, replica);
          } catch (e) {
            this.data.newReplicaStorage = null;
            store.addEvent({ site, host: null, kind: 'reprotect-failed', message: `could not start replicating ${site} to ${replica}: ${(e as Error).message}; the site runs unprotected until it can`, data: {} });
          }
        } else {
          store.addEvent({ site, host: null, kind: 'unprotected', message: `no other storage system can hold a replica of ${site}; it runs unprotected`, data: {} });
        }
        const rec = store.getSite(site)!;
        store.putSite({ ...rec, replicaStorage: this.data.newReplicaStorage ?? null, state: 'serving' });
        return { replica };
      });

      await this.step(done, 'record', async () => {
        const d = this.data;
        const figures = {
          detectionMs: d.detectedAt - d.lastHealthyAt,
          servingAgainMs: (d.servingAgainAt ?? Date.now()) - d.detectedAt,
          replicationLagMsAtFailure: d.replicationLagMsAtFailure ?? null,
        };
        store.addEvent({
          site, host: target, kind: 'failover-complete',
          message: `${site} failed over from ${d.oldPrimary} to ${target} (epoch ${newEpoch}): detected in ≤${figures.detectionMs} ms, serving again ${figures.servingAgainMs} ms after detection, replication lag at failure ${figures.replicationLagMsAtFailure ?? 'unknown'} ms`,
          data: { ...figures, from: d.oldPrimary, to: target, epoch: newEpoch, reason: d.reason, evidence: d.evidence, detectedAt: d.detectedAt, lastHealthyAt: d.lastHealthyAt, servingAgainAt: d.servingAgainAt, transform: d.transformChanges ?? [] },
        });
      });
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      const blocked = err.code === 'US_FENCE_UNCONFIRMED' || err.code === 'US_NO_TARGET';
      store.finishRunbook(this.rb.id, blocked ? 'blocked' : 'failed');
      store.setSiteState(site, 'down');
      store.addEvent({
        site, host: this.data.oldPrimary, kind: blocked ? 'failover-blocked' : 'failover-failed',
        message: `failover of ${site} stopped: ${err.message}${blocked ? ' — an operator must act (understudy failover --force once the old host is known off)' : ''}`,
        data: { code: err.code ?? 'US_INTERNAL' },
      });
      throw e;
    }
  }

  private async step(done: Set<string>, name: string, fn: () => Promise<unknown>): Promise<void> {
    const { store } = this.deps;
    if (done.has(name)) return;
    store.journal(this.rb.id, name, 'begin');
    const started = Date.now();
    let result: unknown;
    try {
      result = await fn();
    } catch (e) {
      store.journal(this.rb.id, name, 'error', { error: (e as Error).message });
      throw e;
    }
    store.updateRunbookData(this.rb.id, this.data);
    store.journal(this.rb.id, name, 'end', { ms: Date.now() - started, ...(result && typeof result === 'object' ? result : {}) });
    this.deps.log.info({ site: this.rb.site, runbook: this.rb.id, step: name, ms: Date.now() - started }, 'runbook step done');
    await pauseForFaultInjection(name);
  }
}

/**
 * Test hook: UNDERSTUDY_FAULT_PAUSE_AFTER_STEP=fence:3000 makes the controller wait
 * 3 s after journaling the end of step `fence`, so that a test can SIGKILL it for
 * real at that point. Unset in production; it changes no decision.
 */
async function pauseForFaultInjection(step: string): Promise<void> {
  const spec = process.env.UNDERSTUDY_FAULT_PAUSE_AFTER_STEP;
  if (!spec) return;
  const [name, ms] = spec.split(':');
  if (name === step) await sleep(Number(ms ?? 3000));
}

export function newFailoverError(message: string): UnderstudyError {
  return new UnderstudyError('US_NO_TARGET', message);
}
