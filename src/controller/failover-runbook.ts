import { UnderstudyError } from '../shared/errors.ts';
import type { RunbookRecord } from '../state/state-store.ts';
import { RunbookJournal, type RunbookDeps } from './runbook-journal.ts';
import { TakeoverSteps } from './takeover-steps.ts';
import { chooseTarget } from './target-choice.ts';

export type { RunbookDeps } from './runbook-journal.ts';

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
  /** When the director was routed to the target (serving again). */
  routedAt?: number;
}

/**
 * The crash-failover runbook (DESIGN.md "The failover runbook"): hold, fence,
 * choose the target, promote, transform, start, wait, route, re-protect, record.
 * Journaled step by step (RunbookJournal): a restarted controller runs it again
 * and it resumes at the step it stopped in. Every step is safe to run twice: the
 * relay's off is idempotent, the storage processor accepts a promote at the epoch
 * it is already at, the agent accepts a start at the epoch it already runs, the
 * director accepts a route at the same epoch.
 */
export class FailoverRunbook {
  private readonly journal: RunbookJournal<FailoverData>;

  constructor(private readonly deps: RunbookDeps, private readonly rb: RunbookRecord) {
    this.journal = new RunbookJournal(deps, rb, rb.data as FailoverData);
  }

  get id(): number {
    return this.rb.id;
  }

  async run(): Promise<void> {
    const { store } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = this.journal.step.bind(this.journal);
    store.setSiteState(site, 'failing-over');

    try {
      await step('hold', async () => {
        // New requests wait in the director instead of failing while the site moves.
        await this.deps.clients.putRoute({ site, epoch: d.oldEpoch, primary: null, readers: [] }).catch((e: UnderstudyError) => {
          // A newer epoch already there means a later step ran: nothing to hold.
          if (e.code !== 'US_STALE_EPOCH') throw e;
        });
      });

      await step('fence', async () => {
        try {
          await this.deps.relay.off(d.oldPrimary);
          d.fenceConfirmed = true;
        } catch (e) {
          if (!d.force) throw e;
          d.fenceConfirmed = false;
          store.addEvent({ site, host: d.oldPrimary, kind: 'fence-forced', message: `fence of ${d.oldPrimary} not confirmed; going on because of --force`, data: { error: (e as Error).message } });
        }
        return { confirmed: d.fenceConfirmed };
      });

      await step('choose-target', async () => {
        const record = store.getSite(site)!;
        d.target = await chooseTarget(this.deps, this.deps.config.sites[site]!, { failed: d.oldPrimary, replicaStorage: record.replicaStorage, requested: d.requestedTarget });
        d.newEpoch = d.oldEpoch + 1;
        return { target: d.target, newEpoch: d.newEpoch };
      });

      await new TakeoverSteps(this.deps, site, d.target!, d.newEpoch!).runJournaled(step, d.oldPrimary, d);

      await step('record', async () => {
        const figures = {
          detectionMs: d.detectedAt - d.lastHealthyAt,
          servingAgainMs: (d.routedAt ?? Date.now()) - d.detectedAt,
          replicationLagMsAtFailure: d.replicationLagMsAtFailure ?? null,
        };
        store.addEvent({
          site, host: d.target!, kind: 'failover-complete',
          message: `${site} failed over from ${d.oldPrimary} to ${d.target} (epoch ${d.newEpoch}): detected in ≤${figures.detectionMs} ms, serving again ${figures.servingAgainMs} ms after detection, replication lag at failure ${figures.replicationLagMsAtFailure ?? 'unknown'} ms`,
          data: { ...figures, from: d.oldPrimary, to: d.target, epoch: d.newEpoch, reason: d.reason, evidence: d.evidence, detectedAt: d.detectedAt, lastHealthyAt: d.lastHealthyAt, servingAgainAt: d.routedAt, transform: d.transformChanges ?? [] },
        });
      });
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      const blocked = err.code === 'US_FENCE_UNCONFIRMED' || err.code === 'US_NO_TARGET';
      store.finishRunbook(this.rb.id, blocked ? 'blocked' : 'failed');
      store.setSiteState(site, 'down');
      store.addEvent({
        site, host: d.oldPrimary, kind: blocked ? 'failover-blocked' : 'failover-failed',
        message: `failover of ${site} stopped: ${err.message}${err.code === 'US_FENCE_UNCONFIRMED' ? ' — an operator must act: understudy failover --force once the old host is known off' : err.code === 'US_NO_TARGET' ? ' — an operator must act: power on a standby attached to the replica\'s storage, then understudy failover ' + site : ''}`,
        data: { code: err.code ?? 'US_INTERNAL' },
      });
      throw e;
    }
  }
}
