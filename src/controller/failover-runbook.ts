import { setTimeout as sleep } from 'node:timers/promises';
import { UnderstudyError } from '../shared/errors.ts';
import { JournaledRunbook } from './journaled-runbook.ts';
import { runRestoreSteps, type RestoreData } from './restore-runbook.ts';
import { TakeoverSteps } from './takeover-steps.ts';
import { chooseTarget } from './target-choice.ts';

export type { RunbookDeps } from './runbook-journal.ts';

/** How soon the drain asks again when replication was between two of its runs. */
const DRAIN_RETRY_MS = 50;
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
  /** Hosts taken only when no other is usable: the last failover's source, when the governor let this one through its cooldown as an independent crash. */
  avoid?: string[];
  force?: boolean;
  /** The worst replication lag of the volume's databases and files when the failure was detected, and whose it was. */
  replicationLagMsAtFailure?: number;
  replicationLagOfAtFailure?: string;
  /** Databases that were not being replicated at the failure: their changes since their last copy are lost. */
  unprotectedAtFailure?: string[];
  target?: string;
  /** The site whose reader `target` was, taken back for this failover (spare-pool.ts). */
  reclaimFrom?: string;
  newEpoch?: number;
  newReplicaStorage?: string | null;
  fenceConfirmed?: boolean;
  /** Whether the old host's storage system shipped its last writes to the replica before the promotion, and in how long. */
  drain?: { shipped: boolean; ms: number; error?: string; skipped?: string; attempts?: number };
  transformChanges?: unknown[];
  /** When the director was routed to the target (serving again). */
  routedAt?: number;
  /** The replica failed verification at its promotion: why, and where. */
  replicaRefused?: { storage: string; message: string; problems: unknown };
  /** Then: the restore that replaces the promotion (absent when the site has no backups). */
  restore?: RestoreData;
}

/**
 * The crash-failover runbook (docs/architecture.md, "The failover runbook"): hold, fence,
 * choose the target, promote, transform, start, wait, route, re-protect, record.
 * Journaled step by step (RunbookJournal): a restarted controller runs it again
 * and it resumes at the step it stopped in. Every step is safe to run twice: the
 * relay's off is idempotent, the storage processor accepts a promote at the epoch
 * it is already at, the agent accepts a start at the epoch it already runs, the
 * director accepts a route at the same epoch.
 *
 * A replica that fails verification when it is promoted (the storage processor refuses
 * with US_REPLICA_CORRUPT, changing nothing) is not used: the step `replica-refused`
 * journals why (event `promotion-refused`), and the runbook goes on as a restore of the
 * newest good restore point onto the same target (runRestoreSteps; it ends with
 * `restore-complete`). Without `volume.backup` it stops `blocked` (`failover-blocked`).
 * A controller that dies before `replica-refused` ended promotes again and is refused
 * again (the damaged replica is neither fenced nor moved by the refusal); after it, the
 * journaled decision takes the restore path.
 */
export class FailoverRunbook extends JournaledRunbook<FailoverData> {
  async run(): Promise<void> {
    const { store } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = this.journal.step.bind(this.journal);
    store.setSiteState(site, 'failing-over');

    try {
      await step('hold', () => this.holdRequests(site, d.oldEpoch));

      await step('fence', async () => {
        try {
          await this.deps.relay.off(d.oldPrimary);
          d.fenceConfirmed = true;
        } catch (e) {
          if (!d.force) throw e;
          d.fenceConfirmed = false;
          store.addEvent({
            site,
            host: d.oldPrimary,
            kind: 'fence-forced',
            message: `fence of ${d.oldPrimary} not confirmed; going on because of --force`,
            data: { error: (e as Error).message },
          });
        }
        return { confirmed: d.fenceConfirmed };
      });

      await step('choose-target', async () => {
        const record = store.getSite(site)!;
        // May wait (site down, `pool-empty`/`spare-denied` events) until a spare of a shared pool is free.
        const choice = await chooseTarget(this.deps, this.deps.config.sites[site]!, {
          failed: d.oldPrimary,
          replicaStorage: record.replicaStorage,
          requested: d.requestedTarget,
          detectedAt: d.detectedAt,
          ...(d.avoid ? { avoid: d.avoid } : {}),
          commit: (host) => {
            // Recorded before any other site's decision: from now on the host is this site's (pool-facts.ts).
            d.target = host;
            d.newEpoch = d.oldEpoch + 1;
            store.updateRunbookData(this.rb.id, d);
          },
        });
        d.target = choice.host;
        d.newEpoch = d.oldEpoch + 1;
        if (choice.reclaim) d.reclaimFrom = choice.reclaim.from;
        return { target: d.target, newEpoch: d.newEpoch, ...(choice.reclaim ? { reclaimFrom: choice.reclaim.from } : {}) };
      });

      // A cold target boots while the old copy drains and the replica is promoted; the
      // start step waits for its agent (and powers it on itself if this did not).
      this.wakeTarget(d.target!);

      if (d.reclaimFrom !== undefined) {
        await step('reclaim-reader', async () => {
          // Failover beats scale-out: the reader of another site on the target is taken back first.
          if (!this.deps.reclaimReader)
            throw new UnderstudyError('US_INTERNAL', `${d.target} is a reader of ${d.reclaimFrom}, and this controller cannot take a reader back`);
          await this.deps.reclaimReader(d.reclaimFrom!, d.target!);
          store.addEvent({
            site,
            host: d.target!,
            kind: 'reader-reclaimed',
            message: `${d.target} stops being a reader of ${d.reclaimFrom} and takes ${site} over (a failover beats a scale-out)`,
            data: { from: d.reclaimFrom },
          });
        });
      }

      if (!d.replicaRefused) {
        await step('drain', async () => {
          d.drain = await this.drainOldCopy();
          return d.drain;
        });
        try {
          await new TakeoverSteps(this.deps, site, d.target!, d.newEpoch!).runJournaled(step, d.oldPrimary, d);
        } catch (e) {
          if ((e as UnderstudyError).code !== 'US_REPLICA_CORRUPT') throw e;
          await step('replica-refused', async () => this.refuse(e as UnderstudyError));
        }
      }
      if (d.replicaRefused) {
        if (!d.restore) {
          throw new UnderstudyError(
            'US_REPLICA_CORRUPT',
            `${d.replicaRefused.message}; ${site} has no backups (sites.${site}.volume.backup) to restore instead`,
          );
        }
        await runRestoreSteps(this.deps, site, d.restore, step);
        store.finishRunbook(this.rb.id, 'done');
        return;
      }

      await step('record', async () => {
        const figures = {
          detectionMs: d.detectedAt - d.lastHealthyAt,
          servingAgainMs: (d.routedAt ?? Date.now()) - d.detectedAt,
          replicationLagMsAtFailure: d.replicationLagMsAtFailure ?? null,
          replicationLagOfAtFailure: d.replicationLagOfAtFailure ?? null,
          tailShipped: d.drain?.shipped ?? null,
          unprotectedAtFailure: d.unprotectedAtFailure ?? [],
        };
        const lagOf = figures.replicationLagOfAtFailure ? ` (${figures.replicationLagOfAtFailure})` : '';
        const unprotected =
          figures.unprotectedAtFailure.length > 0
            ? `; not replicated at failure: ${figures.unprotectedAtFailure.join(', ')} (changes since their last copy are lost)`
            : '';
        store.addEvent({
          site,
          host: d.target!,
          kind: 'failover-complete',
          message: `${site} failed over from ${d.oldPrimary} to ${d.target} (epoch ${d.newEpoch}): detected in ≤${figures.detectionMs} ms, serving again ${figures.servingAgainMs} ms after detection, replication lag at failure ${figures.replicationLagMsAtFailure ?? 'unknown'} ms${lagOf}${d.drain?.shipped && !d.drain.skipped ? `, shipped by the old storage before the promotion (${d.drain.ms} ms)` : ''}${unprotected}`,
          data: {
            ...figures,
            from: d.oldPrimary,
            to: d.target,
            epoch: d.newEpoch,
            reason: d.reason,
            evidence: d.evidence,
            detectedAt: d.detectedAt,
            lastHealthyAt: d.lastHealthyAt,
            servingAgainAt: d.routedAt,
            transform: d.transformChanges ?? [],
          },
        });
      });
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      // The controller stops while the runbook waits for a spare: it stays `running` and resumes at the next start.
      if (err.code === 'US_STOPPING') throw e;
      const blocked = err.code === 'US_FENCE_UNCONFIRMED' || err.code === 'US_NO_TARGET' || err.code === 'US_REPLICA_CORRUPT';
      store.finishRunbook(this.rb.id, blocked ? 'blocked' : 'failed');
      store.setSiteState(site, 'down');
      store.addEvent({
        site,
        host: d.oldPrimary,
        kind: blocked ? 'failover-blocked' : 'failover-failed',
        message: `failover of ${site} stopped: ${err.message}${err.code === 'US_FENCE_UNCONFIRMED' ? ' — an operator must act: understudy failover --force once the old host is known off' : err.code === 'US_NO_TARGET' ? " — an operator must act: power on a standby attached to the replica's storage, then understudy failover " + site : err.code === 'US_REPLICA_CORRUPT' ? ` — an operator must act: no copy of ${site} is known good; repair one by hand, or configure sites.${site}.volume.backup so that restore points can replace it` : ''}`,
        data: { code: err.code ?? 'US_INTERNAL' },
      });
      throw e;
    }
  }

  /**
   * Once the old host is fenced nothing more is written to its volume, but what it
   * wrote last may not have reached the replica yet (the replication lag). When the
   * old host's storage system survived the host, it ships that tail now, so an
   * asynchronous failover loses nothing; one that went down with the host, or does
   * not answer within controller.failover.drainTimeout, costs that bound at most, and
   * the replica is promoted with what it holds. Never fails the failover.
   */
  private async drainOldCopy(): Promise<NonNullable<FailoverData['drain']>> {
    const { config, clients } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const timeoutMs = config.controller.failover.drainTimeoutMs;
    const oldStorage = config.hosts[d.oldPrimary]!.storage;
    if (timeoutMs === 0) return { shipped: false, ms: 0, skipped: 'controller.failover.drainTimeout is off' };
    // A copy that failed verification is what this failover leaves: nothing more of it goes to the good replica.
    if (d.evidence.corruption !== undefined) return { shipped: false, ms: 0, skipped: 'the old copy failed verification' };
    if (config.hosts[d.target!]!.storage === oldStorage) return { shipped: true, ms: 0, skipped: 'the target uses the old host’s own storage' };
    const t0 = Date.now();
    const deadline = t0 + timeoutMs;
    let attempts = 0;
    for (;;) {
      attempts++;
      // The first call gets the whole budget (not one millisecond less when the clock ticks between two reads).
      const left = attempts === 1 ? timeoutMs : Math.max(1, deadline - Date.now());
      try {
        await clients.confirm(oldStorage, site, left, { callTimeoutMs: left + 250 });
        return { shipped: true, ms: Date.now() - t0, ...(attempts > 1 ? { attempts } : {}) };
      } catch (e) {
        // Replication between two of its runs (restarted, not started yet) answers at once
        // and starts again by itself: asked again while the bound allows.
        const code = (e as UnderstudyError).code;
        if ((code === 'US_REPLICATION_STOPPED' || code === 'US_NOT_REPLICATING') && deadline - Date.now() > DRAIN_RETRY_MS) {
          await sleep(DRAIN_RETRY_MS);
          continue;
        }
        return this.drainIncomplete(oldStorage, e as Error, Date.now() - t0, attempts);
      }
    }
  }

  private drainIncomplete(oldStorage: string, e: Error, ms: number, attempts: number): NonNullable<FailoverData['drain']> {
    const site = this.rb.site;
    const d = this.journal.data;
    const error = e.message;
    this.deps.store.addEvent({
      site,
      host: d.oldPrimary,
      kind: 'drain-incomplete',
      message: `${oldStorage} did not ship ${site}'s last writes to the replica (${error}); the replica is promoted with what it holds: writes of the last ${d.replicationLagMsAtFailure ?? 'unknown'} ms before the failure may be missing`,
      data: { storage: oldStorage, error, ms, attempts },
    });
    return { shipped: false, ms, error };
  }

  /** Powers a target that is off on without waiting: booting overlaps the steps before `start`. */
  private wakeTarget(target: string): void {
    const { relay, log } = this.deps;
    if (relay.status(target).power !== 'off') return;
    relay.on(target).catch((e: unknown) => log.warn({ host: target, err: (e as Error).message }, 'early power-on failed; the start step powers it on'));
  }

  /** Journals the refusal and decides what replaces the promotion (a restore, when the site has backups). */
  private refuse(err: UnderstudyError): Record<string, unknown> {
    const { store, config } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const storage = config.hosts[d.target!]!.storage;
    const backup = config.sites[site]!.volume.backup;
    d.replicaRefused = {
      storage,
      message: err.message,
      problems: (err.details as { verification?: { problems?: unknown } } | undefined)?.verification?.problems ?? [],
    };
    if (backup) {
      d.restore = {
        oldPrimary: d.oldPrimary,
        oldEpoch: d.oldEpoch,
        target: d.target!,
        newEpoch: d.newEpoch!,
        vault: backup.to,
        reason: `${d.reason}; the replica on ${storage} failed verification before promotion`,
        startedAt: d.detectedAt,
      };
    }
    store.addEvent({
      site,
      host: d.target!,
      kind: 'promotion-refused',
      message: `${site}: ${err.message}. ${backup ? `Restoring the newest good restore point from ${backup.to} onto ${d.target} (${storage}) instead.` : 'The site has no backups to restore instead.'}`,
      data: { storage, target: d.target, epoch: d.newEpoch, problems: d.replicaRefused.problems, restoreFrom: backup?.to ?? null },
    });
    return { storage, restore: !!backup };
  }
}
