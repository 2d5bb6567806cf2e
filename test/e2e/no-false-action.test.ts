import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { api, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { startLoad } from '../support/load.ts';
import type { Status, Ev } from '../support/views.ts';

/**
 * faults too short to act on. Probes every 200 ms, timeout 500 ms,
 * fall 3: a probe that times out is followed by another 40 ms later, so a stop is
 * detected only once `fall` probes in a row time out, i.e. a stop shorter than
 *   timeout + (fall − 1) × (timeout + 40 ms) = 500 + 2 × 540 = 1580 ms
 * is never detected, whenever it starts (docs/operations.md, "Detection bounds").
 * Malfunction window 5 s at 20 %: a burst of errors shorter than the window does
 * nothing even when it lifts the window's average over the threshold, because
 * every fifth of the window must show errors too.
 */
const ACTION = /failure|failover|fence|power-(on|off)|promot|restore|switchover|scale|reader|malfunction|slowdown|deferred|held-out|runbook/;

function setImmutable(files: string[], on: boolean): void {
  execFileSync('chattr', [on ? '+i' : '-i', ...files.filter((f) => fs.existsSync(f))]);
}

test('one lost probe, a one-second blip and an error burst shorter than the window: no action at all', { timeout: 60_000 }, async (t) => {
  const cluster = await startCluster({
    health: { probe: { every: '200ms', timeout: '500ms', fall: 3, rise: 2 }, malfunction: { errorRate: 0.2, window: '5s' } },
  });
  const vol = path.join(cluster.dir, 'array-a', 'volumes', 'shop');
  const files = [path.join(vol, 'orders.db'), path.join(vol, 'orders.db-wal')];
  let stoppedPid: number | null = null;
  let faulted = false;
  t.after(async () => {
    if (stoppedPid !== null)
      try {
        process.kill(-stoppedPid, 'SIGCONT');
      } catch {
        /* gone */
      }
    if (faulted) setImmutable(files, false);
    await cluster.stop();
  });
  const before = await waitStreaming<Status>(cluster);
  const pid = before.hosts.find((h) => h.name === 'h1')!.pid!;
  const load = startLoad(cluster.front, { workers: 2, maxMs: 45_000 });
  t.after(() => load.stop());
  await sleep(1500);
  const lastEventId = Math.max(0, ...(await api<{ events: Ev[] }>(cluster, '/v1/events')).events.map((e) => e.id));
  const probesAt = async () => (await api<Status>(cluster, '/v1/status')).sites[0]!.primary.probes!;
  const p0 = await probesAt();

  // 1. One lost probe: stopped 800 ms, longer than the probe timeout (500 ms), far shorter than the bound.
  process.kill(-pid, 'SIGSTOP');
  stoppedPid = pid;
  await sleep(800);
  process.kill(-pid, 'SIGCONT');
  stoppedPid = null;
  await sleep(2000);
  const p1 = await probesAt();
  assert.ok(p1.failed - p0.failed >= 1 && p1.failed - p0.failed < 3, `the stop lost a probe or two, fewer than fall: ${p1.failed - p0.failed}`);

  // 2. A one-second blip.
  process.kill(-pid, 'SIGSTOP');
  stoppedPid = pid;
  await sleep(1000);
  process.kill(-pid, 'SIGCONT');
  stoppedPid = null;
  await sleep(2000);
  const p2 = await probesAt();
  assert.ok(p2.failed - p1.failed >= 1 && p2.failed - p1.failed < 3, `the blip lost fewer probes than fall: ${p2.failed - p1.failed}`);

  // 3. Writes fail for 2.5 s (half the 5 s window): the window's average may pass 20 %, its slices do not all.
  const burstAt = Date.now();
  setImmutable(files, true);
  faulted = true;
  await sleep(2500);
  setImmutable(files, false);
  faulted = false;
  const burstEnd = Date.now();
  await sleep(6000); // the whole window that held the burst, and one poll more

  const result = await load.stop();
  const events = (await api<{ events: Ev[] }>(cluster, `/v1/events?after=${lastEventId}`)).events;
  const actions = events.filter((e) => ACTION.test(e.kind));
  assert.deepEqual(
    actions.map((e) => `${e.kind}: ${e.message}`),
    [],
    'no event of any action, deferred or not',
  );

  const after = await api<Status>(cluster, '/v1/status');
  assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch, 'epoch unchanged');
  assert.equal(after.sites[0]!.primary.host, 'h1');
  assert.equal(after.sites[0]!.primary.healthy, true);
  const h1 = after.hosts.find((h) => h.name === 'h1')!;
  assert.equal(h1.power, 'on', 'not powered off');
  assert.equal(h1.pid, pid, 'the same host process group: not fenced, not rebooted');
  assert.ok(
    after.hosts.every((h) => h.trust?.state === 'trusted'),
    `every host trusted: ${JSON.stringify(after.hosts.map((h) => [h.name, h.trust?.state]))}`,
  );
  const runbooks = (await api<{ runbooks: unknown[] }>(cluster, '/v1/runbooks?site=shop')).runbooks;
  assert.deepEqual(runbooks, [], 'no runbook ran');

  // The faults were real: requests waited through the stops, and writes failed during the burst only.
  assert.deepEqual(result.getsFailed, [], 'no GET failed');
  const bad = result.postsFailed.filter((f) => f.status !== 500 || f.at < burstAt || f.at > burstEnd + 1000);
  assert.deepEqual(bad, [], 'POSTs failed only with 500, during the burst');
  assert.ok(result.postsFailed.length > 0, 'the burst made writes fail');
  t.diagnostic(
    `probes lost: ${p1.failed - p0.failed} (800 ms stop), ${p2.failed - p1.failed} (1 s blip); POSTs failed in the burst ${result.postsFailed.length}; acked ${result.acked.length}; GETs ok ${result.getsOk}`,
  );
});
