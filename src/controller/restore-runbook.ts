import { UnderstudyError } from '../shared/errors.ts';
import { JournaledRunbook } from './journaled-runbook.ts';
import type { RestoreResponse } from '../shared/contracts.ts';
import type { RunbookDeps } from './runbook-journal.ts';
import { TakeoverSteps } from './takeover-steps.ts';

export interface RestoreData extends Record<string, unknown> {
  oldPrimary: string;
  oldEpoch: number;
  target: string;
  newEpoch: number;
  vault: string;
  /** Restore the newest point taken at or before this time (epoch ms); newest good one when absent. */
  at?: number;
  reason: string;
  startedAt: number;
  point?: string;
  result?: RestoreResponse;
  transformChanges?: unknown[];
  routedAt?: number;
  newReplicaStorage?: string | null;
}

/**
 * Restores a site from its vault onto the target host's storage system: hold, fence
 * the old primary (its copy is corrupt or gone), choose the restore point, have the
 * target's storage processor fetch, verify and install it as the primary copy at a
 * new epoch, then transform, start, route and re-protect as a failover does. The
 * event names the restore point and how much time was lost (now − point taken).
 */
export class RestoreRunbook extends JournaledRunbook<RestoreData> {
  async run(): Promise<void> {
    const { store } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = this.journal.step.bind(this.journal);
    store.setSiteState(site, 'failing-over');
    try {
      await step('hold', () => this.holdRequests(site, d.oldEpoch));
      await step('fence', () => this.deps.relay.off(d.oldPrimary));
      await runRestoreSteps(this.deps, site, d, step);
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      store.finishRunbook(this.rb.id, 'failed');
      store.setSiteState(site, 'down');
      store.addEvent({
        site,
        host: d.target,
        kind: 'restore-failed',
        message: `restore of ${site} onto ${d.target} failed: ${err.message}`,
        data: { code: err.code ?? 'US_INTERNAL' },
      });
      throw e;
    }
  }
}

/**
 * The steps of a restore once the site is held and its old primary fenced: choose the
 * point, have the target's storage processor fetch, verify and install it as the primary
 * copy at `d.newEpoch`, then transform, start, route, re-protect, and record
 * `restore-complete`. Journaled through `step` (idempotent, resumable). Used by the
 * restore runbook and by a failover whose replica failed verification before promotion.
 */
export async function runRestoreSteps(
  deps: RunbookDeps,
  site: string,
  d: RestoreData,
  step: (name: string, fn: () => Promise<unknown>) => Promise<void>,
): Promise<void> {
  const { store, clients, config } = deps;
  const target = config.hosts[d.target]!;
  await step('choose-point', async () => {
    if (d.at === undefined) {
      d.point = 'latest-good';
      return { point: d.point };
    }
    const points = await clients.vaultPoints(d.vault, site);
    const chosen = points.filter((p) => p.takenAt <= d.at!).sort((a, b) => b.takenAt - a.takenAt)[0];
    if (!chosen)
      throw new UnderstudyError(
        'US_NOT_FOUND',
        `no restore point of ${site} was taken at or before ${new Date(d.at).toISOString()} (oldest: ${points.length ? new Date(Math.min(...points.map((p) => p.takenAt))).toISOString() : 'none'})`,
      );
    d.point = chosen.id;
    return { point: d.point };
  });
  await step('restore', async () => {
    const oldStorage = config.hosts[d.oldPrimary]!.storage;
    if (oldStorage !== target.storage) await clients.demote(oldStorage, site, d.newEpoch).catch(() => undefined);
    try {
      d.result = await clients.restore(target.storage, site, { epoch: d.newEpoch, point: d.point!, vaultUrl: clients.storageUrl(d.vault) });
    } catch (e) {
      // Resumed after the restore itself finished: the volume is already primary at the new epoch.
      const vol = await clients.volume(target.storage, site).catch(() => null);
      if ((e as UnderstudyError).code !== 'US_STALE_EPOCH' || vol?.role !== 'primary' || vol.epoch !== d.newEpoch || vol.restore?.state !== 'done') throw e;
    }
    const rec = store.getSite(site)!;
    store.putSite({ ...rec, epoch: d.newEpoch, primaryHost: d.target, replicaStorage: null });
    return { point: d.result?.point ?? d.point, takenAt: d.result?.takenAt ?? null, bytes: d.result?.bytes ?? null };
  });
  await new TakeoverSteps(deps, site, d.target, d.newEpoch).runJournaled(step, d.oldPrimary, d, { promote: false });
  await step('record', async () => {
    const takenAt = d.result?.takenAt ?? null;
    // A point taken after the detection (the old host already dead, its copy final) loses nothing written before it.
    const lostMs = takenAt === null ? null : Math.max(0, d.startedAt - takenAt);
    const lost =
      takenAt !== null && takenAt >= d.startedAt
        ? 'the point was taken after the failure was detected: nothing written before it is lost'
        : `writes of the last ${lostMs === null ? '?' : (lostMs / 1000).toFixed(1)} s before the restore are lost`;
    store.addEvent({
      site,
      host: d.target,
      kind: 'restore-complete',
      message: `${site} restored from restore point ${d.result?.point ?? d.point}${takenAt ? ` (taken ${new Date(takenAt).toISOString()})` : ''} onto ${d.target} (${target.storage}) at epoch ${d.newEpoch}: ${lost}`,
      data: {
        point: d.result?.point ?? d.point,
        takenAt,
        lostMs,
        bytes: d.result?.bytes ?? null,
        restoreMs: d.result?.ms ?? null,
        reason: d.reason,
        from: d.oldPrimary,
        to: d.target,
        epoch: d.newEpoch,
        skipped: d.result?.skipped ?? [],
      },
    });
  });
}
