import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { http, ports, startCluster, waitStreaming, waitUntil, type Cluster } from './cluster.ts';
import { missingOrders, startLoad, type AckedOrder, type LoadResult } from './load.ts';
import { newestPointAfter, waitEvent, type Ev } from './views.ts';

/**
 * Test support for the vault path: restore points that hold the orders of a load, a
 * replica made unusable so that only the vault can bring the site back, and what a
 * restored site must still hold.
 */

/** Restore points every second, the newest five kept (`ClusterOptions.backup`). */
export const EVERY_SECOND = { every: '1s', keep: 5 };

/** The events that end the controller's handling of a damaged site: restored, failed over, or given up. */
export const RESTORE_ENDINGS: readonly string[] = ['restore-complete', 'restore-failed', 'failover-failed', 'failover-blocked', 'failover-complete'];

/**
 * A cluster taking restore points every second, serving with replication streaming, under
 * a load of orders (2 workers, for `loadMs`, 45 s unless said) tagged `tag`; both end at the
 * test's end at the latest.
 */
export async function startWithRestorePoints(
  t: Pick<TestContext, 'after'>,
  tag: string,
  opts: { env?: Record<string, string>; loadMs?: number } = {},
): Promise<{ cluster: Cluster; load: ReturnType<typeof startLoad> }> {
  const cluster = await startCluster({ backup: EVERY_SECOND, ...(opts.env ? { env: opts.env } : {}) });
  t.after(() => cluster.stop());
  await waitStreaming(cluster);
  const load = startLoad(cluster.front, { workers: 2, maxMs: opts.loadMs ?? 45_000, tag });
  t.after(() => load.stop());
  return { cluster, load };
}

/**
 * Waits until the site's newest restore point was taken after the `n`th acknowledged order
 * (it holds the first `n`), and `also` (checked first) holds.
 */
export async function waitOrdersInPoint(
  c: Cluster,
  acked: AckedOrder[],
  n: number,
  timeoutMs: number,
  also?: { what: string; holds: () => boolean },
): Promise<void> {
  await waitUntil(
    `${also ? `${also.what}, and ` : ''}a restore point holding ${n} acknowledged orders`,
    async () => {
      const a = acked[n - 1];
      return !!a && (also?.holds() ?? true) && (await newestPointAfter(c, a.ackAt));
    },
    timeoutMs,
    100,
  );
}

/**
 * Makes the replica's orders.db on array-b unusable through its storage processor's test
 * hook (UNDERSTUDY_TEST_HOOKS=1: its WAL folded, the page headers overwritten, the copy
 * frozen) and asserts the hook did it; returns the hook's answer.
 */
export async function damageReplica(c: Pick<Cluster, 'slot'>): Promise<unknown> {
  const hook = await http(`http://127.0.0.1:${ports(c.slot).storageB}/v1/test/volumes/shop/damage`, { method: 'POST', body: { db: 'orders.db' } });
  assert.equal(hook.status, 200, JSON.stringify(hook.body));
  return hook.body;
}

/** The first of `RESTORE_ENDINGS`, within `timeoutMs`. */
export function waitRestoreEnd(c: Cluster, timeoutMs: number): Promise<Ev> {
  return waitEvent(c, 'the site restored', (e) => RESTORE_ENDINGS.includes(e.kind), timeoutMs);
}

/**
 * Waits for the first of `RESTORE_ENDINGS`, stops the load, and asserts that the site was
 * restored (restore-complete) onto `host`, naming its point and the time lost; returns that
 * event, the load's result and when the restored point was taken.
 */
export async function waitRestoredOnto(
  c: Cluster,
  load: { stop: () => Promise<LoadResult> },
  host: string,
  timeoutMs: number,
): Promise<{ done: Ev; result: LoadResult; takenAt: number }> {
  const done = await waitRestoreEnd(c, timeoutMs);
  const result = await load.stop();
  assert.equal(done.kind, 'restore-complete', done.message);
  assert.equal(done.data.to, host);
  assert.equal(typeof done.data.point, 'string');
  assert.equal(typeof done.data.lostMs, 'number');
  return { done, result, takenAt: Number(done.data.takenAt) };
}

/** The orders acknowledged before a restored point was taken, and those of them the site no longer has. */
export async function ordersBeforePoint(front: string, acked: AckedOrder[], takenAt: number): Promise<{ before: AckedOrder[]; missing: AckedOrder[] }> {
  const before = acked.filter((o) => o.ackAt < takenAt);
  return { before, missing: await missingOrders(front, before) };
}
