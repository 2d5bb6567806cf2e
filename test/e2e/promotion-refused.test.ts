import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, orderTakenBy, waitUntil } from '../support/cluster.ts';
import { events, runbooks, status, waitEvent } from '../support/views.ts';
import { damageReplica, startWithRestorePoints, ordersBeforePoint, waitOrdersInPoint } from '../support/restore-points.ts';

/**
 * Verification before any promotion, deterministically: the replica is made
 * unusable (test hook, UNDERSTUDY_TEST_HOOKS=1) and the primary host is killed at once. A
 * crash failover always promotes, whatever the replica's last scheduled verification said,
 * so the storage processor's check at the promotion is what refuses it: the failover
 * records `promotion-refused` and restores the newest good restore point onto the same
 * target instead; the damaged replica never serves.
 *
 * Idempotent under the journal, for real: the controller pauses 4 s after journaling
 * `replica-refused` (UNDERSTUDY_FAULT_PAUSE_AFTER_STEP) and is SIGKILLed there; `up` starts a
 * new one, which resumes the same runbook on the restore path — one refusal, one restore.
 */
test(
  'crash with a damaged replica: the promotion is refused after verification and the failover restores the newest good point instead',
  { timeout: 90_000 },
  async (t) => {
    const { cluster, load } = await startWithRestorePoints(t, 'pr', {
      env: { UNDERSTUDY_TEST_HOOKS: '1', UNDERSTUDY_FAULT_PAUSE_AFTER_STEP: 'replica-refused:4000' },
    });
    await waitOrdersInPoint(cluster, load.result.acked, 100, 20_000);

    await damageReplica(cluster);
    const pid = (await status(cluster)).hosts.find((h) => h.name === 'h1')!.pid!;
    assert.ok(pid > 0);
    process.kill(-pid, 'SIGKILL');
    const killedAt = Date.now();

    await waitUntil(
      'replica-refused books',
      async () => (await runbooks(cluster)).some((r) => r.journal.some((j) => j.step === 'replica-refused' && j.phase === 'end')),
      20_000,
      20,
    );
    const { pid: controllerPid } = await api<{ pid: number }>(cluster, '/healthz');
    process.kill(controllerPid, 'SIGKILL');

    const done = await waitEvent(
      cluster,
      'the failover to end',
      (e) => ['restore-complete', 'failover-failed', 'failover-blocked', 'failover-complete'].includes(e.kind),
      40_000,
    );
    const r = await load.stop();
    assert.equal(done.kind, 'restore-complete', done.message);
    const all = await events(cluster);
    const refused = all.find((e) => e.kind === 'promotion-refused');
    assert.ok(refused, 'the promotion was refused');
    t.diagnostic(refused.message);
    t.diagnostic(done.message);
    assert.match(refused.message, /failed verification before promotion.*orders\.db.*Restoring the newest good restore point from vault onto h2/s);
    assert.ok(!all.some((e) => e.kind === 'promoted'), 'the damaged replica was never promoted');
    assert.notEqual((await api<{ pid: number }>(cluster, '/healthz')).pid, controllerPid, 'a new controller finished it');
    assert.ok(
      all.some((e) => e.kind === 'runbook-resumed'),
      'the runbook was resumed',
    );
    assert.equal(all.filter((e) => e.kind === 'promotion-refused').length, 1, 'refused once, journaled once');
    assert.equal(all.filter((e) => e.kind === 'restore-complete').length, 1, 'restored once');
    const books = await runbooks(cluster);
    assert.deepEqual(
      books.map((r) => `${r.kind}:${r.status}`),
      ['failover:done'],
      'one runbook, resumed rather than started again',
    );
    assert.equal(books[0]!.journal.filter((j) => j.step === 'restore' && j.phase === 'end').length, 1);
    assert.equal(done.data.to, 'h2');
    // The point may have been taken after the kill (the old copy is final once the host is dead, and backups of it go on until it is demoted).
    const takenAt = Number(done.data.takenAt);

    await orderTakenBy(cluster, 'h2', 'after');
    const { before, missing } = await ordersBeforePoint(cluster.front, r.acked, takenAt);
    assert.ok(before.length >= 100);
    assert.deepEqual(missing, [], 'every order acknowledged before the restored point is there');
    t.diagnostic(
      `${r.acked.length} orders acknowledged, ${before.length} before the restored point; serving again ${Date.now() - killedAt} ms after the kill (upper bound; includes the controller killed in its pause after replica-refused and its restart by up)`,
    );
  },
);
