import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isGroupAlive } from '../../src/power/process-group.ts';
import { api, http, sleep, startCluster, waitStreaming } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { type Status, type Runbook, assertNoEvents, events, waitEvent } from '../support/views.ts';

/**
 * the primary hangs (SIGSTOP of its whole process group: agent and
 * app alive, nothing answers). Probes: every 100 ms, timeout 300 ms, fall 2.
 */
test(
  'SIGSTOP of the primary under load: hang detected with its evidence, fenced failover, no acknowledged order lost, SIGCONT writes nothing',
  { timeout: 60_000 },
  async (t) => {
    const cluster = await startCluster({ replication: 'sync' });
    let stoppedPid: number | null = null;
    t.after(async () => {
      // Never leave a stopped group behind, whatever failed.
      if (stoppedPid !== null)
        try {
          process.kill(-stoppedPid, 'SIGCONT');
        } catch {
          /* gone */
        }
      await cluster.stop();
    });
    const before = await waitStreaming<Status>(cluster);
    assert.equal(before.sites[0]!.primary.host, 'h1');
    const h1 = cluster.hostAddress('h1');
    const pid = before.hosts.find((h) => h.name === 'h1')!.pid!;
    assert.ok(pid > 0);

    const load = startLoad(cluster.front, { workers: 4, maxMs: 40_000 });
    t.after(() => load.stop());
    await sleep(1500);

    const stopAt = Date.now();
    process.kill(-pid, 'SIGSTOP');
    stoppedPid = pid;

    const done = await waitEvent(cluster, 'failover-complete', (e) => e.kind === 'failover-complete', 25_000, 50);
    const evs = await events(cluster);

    // The action taken: classified as a hang, with its evidence.
    const detected = evs.filter((e) => e.kind === 'failure-detected');
    assert.equal(detected.length, 1, `one failure-detected: ${detected.map((e) => e.message).join(' | ')}`);
    const d = detected[0]!;
    assert.equal(d.host, 'h1');
    assert.equal(d.data.failure, 'hang', d.message);
    assert.match(d.message, /hang: the process is alive but \d+ of \d+ probes timed out/);
    const classification = d.data.classification as { processAlive: boolean; counts: Record<string, number> };
    assert.equal(classification.processAlive, true, 'evidence: the process is alive');
    assert.ok(classification.counts.timeout! >= 2, `evidence: fall (2) probes timed out: ${JSON.stringify(classification.counts)}`);
    const detectionMs = Number(d.data.detectedAt) - stopAt;
    assert.ok(detectionMs > 0 && detectionMs < 1500, `hang detected ${detectionMs} ms after the SIGSTOP`);

    // Fenced: powered off, confirmed, the whole (stopped) group gone.
    const rb = (await api<{ runbooks: Runbook[] }>(cluster, '/v1/runbooks?site=shop')).runbooks.filter((r) => r.kind === 'failover');
    assert.equal(rb.length, 1, 'exactly one failover runbook');
    assert.equal(rb[0]!.status, 'done');
    assert.equal(rb[0]!.data.fenceConfirmed, true, 'the fence was confirmed');
    assert.ok(rb[0]!.journal.some((j) => j.step === 'fence' && j.phase === 'end'));
    const after = await api<Status>(cluster, '/v1/status');
    const oldHost = after.hosts.find((h) => h.name === 'h1')!;
    assert.equal(oldHost.power, 'off');
    assert.equal(oldHost.pid, null);
    assert.equal(isGroupAlive(pid), false, 'no process of the stopped group is left');
    assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch + 1);
    assert.notEqual(after.sites[0]!.primary.host, 'h1');
    assert.equal(done.data.to, after.sites[0]!.primary.host);

    // SIGCONT afterwards: nothing to wake (it is powered off); nothing answers on h1, everything goes to the new primary.
    // (The group may still exist as zombies not reaped yet, so the signal itself may be delivered.)
    try {
      process.kill(-pid, 'SIGCONT');
    } catch {
      /* ESRCH: nothing left at all */
    }
    stoppedPid = null;
    const contAt = Date.now();
    await sleep(1500);
    const probeOld = await http(`http://${h1}:3000/healthz`, { timeoutMs: 500 }).then(
      (r) => `answered ${r.status}`,
      (e: Error) => e.message,
    );
    assert.doesNotMatch(probeOld, /answered/, 'the old primary answers nothing');
    assert.equal(isGroupAlive(pid), false, 'SIGCONT woke nothing: the group is gone');
    const result = await load.stop();
    const lateFromOld = result.answers.filter((a) => a.at > contAt && a.servedBy?.startsWith(`${h1}:`));
    assert.deepEqual(lateFromOld, [], 'no answer from the old primary after SIGCONT');
    assert.ok(
      result.answers.some((a) => a.ok && a.at > contAt),
      'the site serves after SIGCONT',
    );

    // No acknowledged order lost (sync replication).
    const missing = await missingOrders(cluster.front, result.acked);
    assert.deepEqual(missing, [], 'every order that got 201 is present');
    assert.ok(result.acked.length > 20, `orders were acknowledged (${result.acked.length})`);
    const unexpected = result.postsFailed.filter((f) => f.status !== 503);
    assert.deepEqual(unexpected, [], 'a POST that did not get 201 got 503 (outcome unknown), never another error');
    assert.deepEqual(result.getsFailed, [], 'no GET failed');

    // The actions not taken: no second failover, nothing deferred, blocked or restored, no other host fenced.
    const final = await events(cluster);
    const kinds = final.map((e) => e.kind);
    assert.equal(kinds.filter((k) => k === 'failover-started').length, 1);
    assertNoEvents(final, ['failover-deferred', 'failover-blocked', 'failover-failed', 'restore-started', 'switchover-started']);
    assert.deepEqual(
      final.filter((e) => e.kind === 'power-off' && e.host !== 'h1'),
      [],
      'no other host powered off',
    );
    const endStatus = await api<Status>(cluster, '/v1/status');
    assert.equal(endStatus.sites[0]!.epoch, before.sites[0]!.epoch + 1, 'exactly one change of primary');
    assert.equal(endStatus.sites[0]!.state === 'serving' || endStatus.sites[0]!.state === 'degraded', true);
    t.diagnostic(
      `hang detected in ${detectionMs} ms; serving again ${String(done.data.servingAgainMs)} ms after detection; orders acked ${result.acked.length}; POSTs 503 ${result.postsFailed.length}; GETs ok ${result.getsOk}`,
    );
  },
);
