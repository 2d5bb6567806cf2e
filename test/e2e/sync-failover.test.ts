import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, http, sleep, startCluster, waitUntil } from '../support/cluster.ts';
import { missingOrders, startLoad } from '../support/load.ts';
import { storageProcesses } from '../support/procs.ts';
import type { Status } from '../support/views.ts';

const FAILOVERS = 3; // bench/failover --sync runs the full 20
const HOST_STORAGE: Record<string, string> = { h1: 'array-a', h2: 'array-b', h3: 'array-a' };

/**
 * Each crash takes the whole machine: the primary's storage processor stalls (SIGSTOP:
 * its shipper stops while the app goes on committing), then the host AND the storage
 * processor are SIGKILLed, so frames the replica had not confirmed are gone with them
 * (a crash of the host alone leaves its storage shipping the WAL's tail, and passes
 * even without the sync barrier). `up` restarts the storage processor, which then holds a
 * stale copy that the new epoch fences.
 */
test(
  `sync mode: ${FAILOVERS} crash failovers under load, each killing the primary's host and its storage, lose no order that got 201, and no GET fails`,
  { timeout: 300_000 },
  async (t) => {
    const cluster = await startCluster({
      replication: 'sync',
      hosts: [
        { name: 'h1', storage: 'array-a', boot: true },
        { name: 'h2', storage: 'array-b', boot: true },
        { name: 'h3', storage: 'array-a', boot: true },
      ],
      env: { UNDERSTUDY_FAILOVER_MIN_GAP_MS: '0' },
    });
    t.after(() => cluster.stop());
    const load = startLoad(cluster.front, { workers: 4, maxMs: 240_000 });
    t.after(() => load.stop());

    const ackedPerRound: number[] = [];
    let lastKillAt = 0;
    for (let i = 0; i < FAILOVERS; i++) {
      const st = await waitUntil(
        'serving and streaming',
        async () => {
          const s = await api<Status>(cluster, '/v1/status');
          return s.sites[0]!.state === 'serving' && s.sites[0]!.replication.state === 'streaming' ? s : null;
        },
        60_000,
      );
      await sleep(1000);
      const old = st.sites[0]!.primary;
      const killAt = Date.now();
      ackedPerRound.push(load.result.acked.filter((o) => o.ackAt < killAt).length);
      lastKillAt = killAt;
      const storage = HOST_STORAGE[old.host]!;
      const storageProcs = storageProcesses(cluster.dir, storage);
      assert.equal(storageProcs.length, 1, `the storage processor of ${storage} runs once: ${JSON.stringify(storageProcs.map((p) => p.argv))}`);
      // The storage stalls first (its shipper stops while the app goes on committing), then the machine dies.
      process.kill(storageProcs[0]!.pid, 'SIGSTOP');
      await sleep(300);
      process.kill(-st.hosts.find((h) => h.name === old.host)!.pid!, 'SIGKILL');
      process.kill(storageProcs[0]!.pid, 'SIGKILL');
      await waitUntil(
        'answers from the new primary',
        async () => load.result.answers.some((a) => a.ok && a.at > killAt && !a.servedBy?.startsWith(`${old.address}:`)),
        30_000,
      );
      // The fault was real: that storage processor died, and `up` started a new one.
      await waitUntil(`storage ${storage} restarted`, async () => storageProcesses(cluster.dir, storage).some((p) => p.pid !== storageProcs[0]!.pid), 20_000);
      // The old host comes back as a spare for the next round.
      await api(cluster, `/v1/hosts/${old.host}/power`, { action: 'on' });
      await waitUntil(
        'its agent',
        async () => (await http(`http://${old.address}:7001/healthz`, { timeoutMs: 500 }).catch(() => null))?.status === 200,
        20_000,
      );
    }
    await sleep(500);
    const result = await load.stop();
    const missing = await missingOrders(cluster.front, result.acked);
    const by503 = result.postsFailed.filter((f) => f.status === 503).length;
    t.diagnostic(
      `orders acked ${result.acked.length}, lost ${missing.length}, POSTs answered 503 ${by503}, other POST failures ${result.postsFailed.length - by503}, GETs ok ${result.getsOk}, failed ${result.getsFailed.length}`,
    );
    // No acknowledged order means nothing could be missing: the load must really have been acknowledged,
    // before every kill and after the last failover.
    const ackedAfterLast = result.acked.filter((o) => o.ackAt > lastKillAt).length;
    assert.ok(result.acked.length >= 50, `enough acknowledged orders (${result.acked.length})`);
    for (let i = 1; i < ackedPerRound.length; i++) {
      assert.ok(ackedPerRound[i]! > ackedPerRound[i - 1]!, `orders acknowledged between kill ${i} and kill ${i + 1} (${ackedPerRound.join(', ')})`);
    }
    assert.ok(ackedAfterLast > 0, 'orders acknowledged after the last failover');
    assert.deepEqual(missing, [], 'every order that got 201 is present');
    assert.deepEqual(result.getsFailed, [], 'no GET failed');
    assert.equal(result.postsFailed.length, by503, 'a POST that did not get 201 got 503 (never a silent drop or another error)');
    assert.equal((await api<Status>(cluster, '/v1/status')).sites[0]!.epoch, 1 + FAILOVERS);
  },
);
