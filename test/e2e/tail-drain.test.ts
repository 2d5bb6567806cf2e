import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { processesOf, storageProcesses } from '../support/procs.ts';
import { events, runbooks, waitEvent, type Status } from '../support/views.ts';

function storageProcess(dir: string, name: string) {
  const procs = storageProcesses(dir, name);
  assert.equal(procs.length, 1, `the storage processor of ${name} runs once`);
  return procs[0]!;
}

/**
 * Async mode, the primary host crashes while its replica lags far behind (the
 * replica's storage processor is stalled: the primary's storage cannot ship). The
 * primary's storage processor survives the host, so once the host is fenced it ships
 * the tail before the replica is promoted: no acknowledged order is lost, although
 * the lag at the failure was hundreds of milliseconds.
 */
test('async: a crashed host whose storage survives loses no acknowledged order, even with a large replication lag', { timeout: 120_000 }, async (t) => {
  const c = await startCluster({});
  t.after(() => c.stop());
  const st = await waitStreaming<Status>(c);
  const replica = st.sites[0]!.replication.to!;
  const h1 = st.hosts.find((h) => h.name === 'h1')!;
  const load = startLoad(c.front, { workers: 4, maxMs: 60_000 });
  t.after(() => load.stop());
  await waitUntil('orders acknowledged', async () => load.result.acked.length >= 20, 20_000);

  const replicaProc = storageProcess(c.dir, replica);
  const stallAt = Date.now();
  process.kill(replicaProc.pid, 'SIGSTOP');
  t.after(() => {
    try {
      process.kill(replicaProc.pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  await sleep(600);
  const killAt = Date.now();
  process.kill(-h1.pid!, 'SIGKILL');
  await sleep(150);
  process.kill(replicaProc.pid, 'SIGCONT');

  await waitUntil(
    'answers from another host',
    async () => load.result.answers.some((a) => a.ok && a.at > killAt && !a.servedBy?.startsWith(`${h1.address}:`)),
    30_000,
  );
  await sleep(500);
  const result = await load.stop();

  // The fault was real: orders were acknowledged while the replica could confirm nothing, and the lag says so.
  const inTail = result.acked.filter((o) => o.ackAt > stallAt + 50 && o.ackAt < killAt);
  assert.ok(inTail.length >= 10, `orders acknowledged while the replica was stalled (${inTail.length})`);
  const done = await waitEvent(c, 'failover-complete', (e) => e.kind === 'failover-complete', 10_000);
  const lag = Number(done.data.replicationLagMsAtFailure);
  assert.ok(lag >= 300, `the lag at the failure was large (${lag} ms)`);

  // The action taken: the old storage shipped the tail before the promotion; nothing acknowledged is missing.
  const missing = await missingOrders(c.front, result.acked);
  t.diagnostic(`orders acked ${result.acked.length}, in the stalled tail ${inTail.length}, lag at failure ${lag} ms, lost ${missing.length}`);
  assert.deepEqual(missing, [], 'every order that got 201 is present');
  assert.equal(done.data.tailShipped, true);
  const [rb] = (await runbooks(c, 'shop')).filter((r) => r.kind === 'failover');
  const drainEnd = rb!.journal.find((j) => j.step === 'drain' && j.phase === 'end');
  const promoteBegin = rb!.journal.find((j) => j.step === 'promote' && j.phase === 'begin');
  assert.ok(drainEnd && promoteBegin && drainEnd.at <= promoteBegin.at, 'the tail was shipped before the promotion');
  // The actions not taken: one failover, nothing blocked, no incomplete drain.
  const evs = await events(c);
  assert.deepEqual(
    evs.filter((e) => ['failover-started', 'failover-blocked', 'failover-failed', 'drain-incomplete'].includes(e.kind)).map((e) => e.kind),
    ['failover-started'],
  );
  assert.ok(
    result.acked.some((o) => o.ackAt > killAt),
    'orders acknowledged after the failover',
  );
});

/**
 * The whole machine goes: host and storage processor SIGKILLed together. Nothing can
 * ship the tail; the failover does not wait for it (the storage refuses at once), says
 * so (`drain-incomplete`), and completes.
 */
test('async: a host that crashes with its storage: the drain is recorded incomplete and the failover goes on at once', { timeout: 120_000 }, async (t) => {
  const c = await startCluster({});
  t.after(() => c.stop());
  const st = await waitStreaming<Status>(c);
  const h1 = st.hosts.find((h) => h.name === 'h1')!;
  const primaryStorage = storageProcess(c.dir, 'array-a');
  const load = startLoad(c.front, { workers: 2, maxMs: 60_000 });
  t.after(() => load.stop());
  await waitUntil('orders acknowledged', async () => load.result.acked.length >= 10, 20_000);

  const killAt = Date.now();
  process.kill(-h1.pid!, 'SIGKILL');
  process.kill(primaryStorage.pid, 'SIGKILL');
  await waitUntil(
    'answers from another host',
    async () => load.result.answers.some((a) => a.ok && a.at > killAt && !a.servedBy?.startsWith(`${h1.address}:`)),
    30_000,
  );
  const result = await load.stop();
  assert.ok(!processesOf(c.dir).some((p) => p.pid === primaryStorage.pid), 'the storage processor really died');

  const incomplete = await waitEvent(c, 'drain-incomplete', (e) => e.kind === 'drain-incomplete', 10_000);
  assert.equal(incomplete.data.storage, 'array-a');
  assert.ok(Number(incomplete.data.ms) < 1000, `refused at once, not waited out (${String(incomplete.data.ms)} ms)`);
  const done = await waitEvent(c, 'failover-complete', (e) => e.kind === 'failover-complete', 10_000);
  assert.equal(done.data.tailShipped, false);
  const evs = await events(c);
  assert.equal(evs.filter((e) => e.kind === 'failover-started').length, 1, 'one failover');
  assert.equal(evs.filter((e) => e.kind === 'failover-blocked' || e.kind === 'failover-failed').length, 0, 'nothing blocked');
  t.diagnostic(
    `orders acked ${result.acked.length}; drain refused after ${String(incomplete.data.ms)} ms; serving again ${String(done.data.servingAgainMs)} ms after detection`,
  );
});
