import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { EtcdClient } from '../../src/state/etcd-client.ts';
import { LeaderLease } from '../../src/controller/leader-lease.ts';
import { startEtcd, type EtcdCluster } from '../support/etcd.ts';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PartClients } from '../../src/controller/clients.ts';
import { StorageProcessor } from '../../src/storage/storage-processor.ts';
import { freePort, makeConfig, tempDir, testLogger } from '../unit/storage/helpers.ts';

/**
 * The controllers' leader lease against a real three-member etcd (Debian's etcd-server):
 * one leader at a time, a new leader only after the old one stopped acting, a higher
 * fencing token at every term, and what losing members does.
 */
/**
 * Short test timings that keep Patroni's rule (loop + 2 × retry ≤ ttl) with room for
 * etcd's own re-election (election timeout 500 ms in the test cluster) when its raft
 * leader is lost: a renewal that waits through it still comes before the deadline.
 */
const TIMING = { ttlMs: 3000, loopMs: 300, retryMs: 1000 };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Contender {
  name: string;
  lease: LeaderLease;
  client: EtcdClient;
  /** Every change of leadership, with when it happened (performance.now()). */
  changes: { leader: boolean; token: number | null; at: number }[];
}

function contender(name: string, endpoints: string[], key: string): Contender {
  const client = new EtcdClient(endpoints, TIMING.retryMs);
  const changes: Contender['changes'] = [];
  const lease = new LeaderLease({ client, key, name, ...TIMING, onChange: (leader, token) => changes.push({ leader, token, at: performance.now() }) });
  return { name, lease, client, changes };
}

async function until(what: string, cond: () => boolean, withinMs: number): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > withinMs) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await sleep(20);
  }
  return performance.now() - start;
}

async function withCluster(t: { after: (fn: () => Promise<void>) => void }): Promise<EtcdCluster> {
  const etcd = await startEtcd(3);
  t.after(() => etcd.stop());
  return etcd;
}

function stopAll(t: { after: (fn: () => Promise<void>) => void }, cs: Contender[]): void {
  t.after(async () => {
    for (const c of cs) {
      await c.lease.stop(false);
      await c.client.close();
    }
  });
}

/** `a` leads (on `aEndpoints`), then `b` (on `bEndpoints`) starts stepping beside it. */
async function leaderThenFollower(
  t: { after: (fn: () => Promise<void>) => void },
  key: string,
  aEndpoints: string[],
  bEndpoints = aEndpoints,
): Promise<{ a: Contender; b: Contender }> {
  const a = contender('ctl-a', aEndpoints, key);
  const b = contender('ctl-b', bEndpoints, key);
  stopAll(t, [a, b]);
  a.lease.start();
  await until('a leads', () => a.lease.holds(), 5000);
  b.lease.start();
  return { a, b };
}

/**
 * A real storage processor, and a command to it sent with a fencing token: a promote of a
 * site it does not hold. What matters is whether it passes the fencing gate (it then
 * fails with US_NOT_FOUND) or not (US_STALE_LEADER). Resolves with the error code.
 */
async function storageToCommand(t: { after: (fn: () => unknown) => void }): Promise<(token: number | null) => Promise<string | undefined>> {
  const root = tempDir('us-lease-fencing-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const port = await freePort();
  const config = makeConfig([{ name: 'array-a', path: path.join(root, 'a'), port }]);
  const sp = new StorageProcessor(config, 'array-a', testLogger());
  t.after(() => sp.stop());
  await sp.start();
  return (token) =>
    new PartClients(config, () => token).promote('array-a', 'shop', 1).then(
      () => undefined,
      (e: { code?: string }) => e.code,
    );
}

test('one leader at a time; a resigned leader is followed at the next step, with a higher fencing token', async (t) => {
  const etcd = await withCluster(t);
  const { a, b } = await leaderThenFollower(t, '/understudy/t1/leader', etcd.endpoints);
  await sleep(TIMING.loopMs * 3);
  assert.equal(b.lease.holds(), false, 'b does not lead while a does');
  const view = b.lease.status();
  assert.equal(view.role, 'follower');
  if (view.role === 'follower') assert.equal(view.leader, 'ctl-a');
  const first = a.lease.fencingToken()!;
  assert.ok(first > 0);

  await a.lease.stop(true); // a clean shutdown gives the key up
  assert.equal(a.lease.holds(), false);
  const took = await until('b leads', () => b.lease.holds(), 3000);
  assert.ok(took < TIMING.ttlMs, `b took over in ${took.toFixed(0)} ms, without waiting for the ttl`);
  assert.ok(b.lease.fencingToken()! > first, `b's token ${b.lease.fencingToken()} is higher than a's ${first}`);
  assert.deepEqual(
    a.changes.map((c) => c.leader),
    [true, false],
  );
});

test('a leader that stops renewing (its process frozen) is followed only after its lease ran out, and it stopped acting first', async (t) => {
  const etcd = await withCluster(t);
  const { a, b } = await leaderThenFollower(t, '/understudy/t2/leader', etcd.endpoints);
  await sleep(TIMING.loopMs * 2);
  const first = a.lease.fencingToken()!;
  await a.lease.stop(false); // frozen: no more renewals, and the key is not given up
  const frozenAt = performance.now();
  await until('a stops acting', () => !a.lease.holds(), TIMING.ttlMs);
  const aStopped = performance.now();
  await until('b leads', () => b.lease.holds(), TIMING.ttlMs + 3 * TIMING.loopMs + 1000);
  const bLeads = performance.now();
  assert.ok(aStopped < bLeads, 'a stopped acting before b began');
  assert.ok(bLeads - frozenAt >= TIMING.ttlMs - TIMING.loopMs - TIMING.retryMs, `b waited for the lease (${(bLeads - frozenAt).toFixed(0)} ms)`);
  assert.ok(b.lease.fencingToken()! > first);
});

test("a leader cut off from etcd stops acting before its lease can expire; the others' leader follows it, never overlapping", async (t) => {
  const etcd = await withCluster(t);
  // a reaches etcd only through m1; b through m2 and m3.
  const { a, b } = await leaderThenFollower(t, '/understudy/t3/leader', [etcd.endpoints[0]!], etcd.endpoints.slice(1));
  await sleep(TIMING.loopMs * 2);
  assert.equal(b.lease.holds(), false);
  const first = a.lease.fencingToken()!;

  // A real storage processor, commanded by both (a promote of a site it does not hold:
  // what matters is whether the command passes the fencing gate).
  const command = await storageToCommand(t);
  // a's commands carry the token a last held, as a process paused past its lease would send them.
  assert.equal(await command(first), 'US_NOT_FOUND', "a's command passes while it leads");

  etcd.pause(0); // m1 answers nothing: a is cut off
  t.after(() => etcd.resume(0));
  const cutAt = performance.now();
  await until('a stops acting', () => !a.lease.holds(), TIMING.ttlMs + 500);
  const aStopped = performance.now();
  await until('b leads', () => b.lease.holds(), TIMING.ttlMs + 3 * TIMING.loopMs + 3000);
  const bLeads = performance.now();
  t.diagnostic(`a stopped acting ${(aStopped - cutAt).toFixed(0)} ms after the cut, b led ${(bLeads - cutAt).toFixed(0)} ms after it`);
  assert.ok(aStopped - cutAt <= TIMING.ttlMs, 'a stopped within the ttl of the cut');
  assert.ok(aStopped < bLeads, 'never two leaders');
  assert.equal(a.changes.at(-1)?.leader, false, 'a was told it lost the lead');
  assert.ok(b.lease.fencingToken()! > first, 'the new term has a higher token: parts refuse the old one');
  assert.equal(a.lease.fencingToken(), null);

  assert.equal(await command(b.lease.fencingToken()), 'US_NOT_FOUND', "the new leader's command passes");
  assert.equal(await command(first), 'US_STALE_LEADER', "the old leader's command, sent afterwards, is refused");
});

test('one etcd member of three lost: the leader goes on; two lost: nobody leads; restored: a leader again', async (t) => {
  const etcd = await withCluster(t);
  const { a, b } = await leaderThenFollower(t, '/understudy/t4/leader', etcd.endpoints);
  const token = a.lease.fencingToken();

  // The worst member to lose: etcd's own leader (the others elect a new one meanwhile).
  const raftLeader = (await etcd.leader()) ?? 0;
  await etcd.kill(raftLeader);
  const steadyUntil = performance.now() + TIMING.ttlMs * 2;
  while (performance.now() < steadyUntil) {
    assert.equal(a.lease.holds(), true, 'one member lost: a keeps the lead');
    assert.equal(b.lease.holds(), false);
    await sleep(50);
  }
  assert.equal(a.lease.fencingToken(), token, 'the same term');

  const second = [0, 1, 2].find((i) => i !== raftLeader)!;
  await etcd.kill(second); // no quorum left
  await until('a stops acting', () => !a.lease.holds(), TIMING.ttlMs + 500);
  await sleep(TIMING.ttlMs * 2);
  assert.equal(a.lease.holds(), false, 'no quorum: nobody leads');
  assert.equal(b.lease.holds(), false);
  assert.equal(a.lease.status().role, 'unknown');

  await Promise.all([etcd.restart(raftLeader), etcd.restart(second)]);
  await until('a leader again', () => a.lease.holds() || b.lease.holds(), 15_000);
  const leader = a.lease.holds() ? a : b;
  assert.ok(leader.lease.fencingToken()! > token!, 'a new term after the outage');
  assert.equal([a, b].filter((c) => c.lease.holds()).length, 1);
});

test('leadership moves twice (a → b → a): every term has a higher token, and a part refuses each older one', async (t) => {
  const etcd = await withCluster(t);
  const key = '/understudy/t5/leader';
  const codeOf = await storageToCommand(t);

  const { a: a1, b } = await leaderThenFollower(t, key, etcd.endpoints);
  const t1 = a1.lease.fencingToken()!;
  assert.equal(await codeOf(t1), 'US_NOT_FOUND', 'term 1 commands pass');

  await a1.lease.stop(false); // a crashes
  await until('b leads', () => b.lease.holds(), TIMING.ttlMs + 3000);
  const t2 = b.lease.fencingToken()!;
  assert.equal(await codeOf(t2), 'US_NOT_FOUND', 'term 2 commands pass');

  const a2 = contender('ctl-a', etcd.endpoints, key); // a, restarted
  stopAll(t, [a2]);
  a2.lease.start();
  await sleep(TIMING.loopMs * 3);
  assert.equal(a2.lease.holds(), false, 'the restarted a follows while b leads');
  await b.lease.stop(true); // b shuts down cleanly
  await until('a leads again', () => a2.lease.holds(), 3000);
  const t3 = a2.lease.fencingToken()!;
  assert.ok(t1 < t2 && t2 < t3, `tokens grow: ${t1} < ${t2} < ${t3}`);
  assert.equal(await codeOf(t3), 'US_NOT_FOUND', 'term 3 commands pass');
  assert.equal(await codeOf(t2), 'US_STALE_LEADER', 'term 2 is refused now');
  assert.equal(await codeOf(t1), 'US_STALE_LEADER', 'and term 1');
});

test('the etcd client goes on to the next member when one refuses or hangs, within one call budget', async (t) => {
  const etcd = await withCluster(t);
  // A member that accepts connections and never answers (cut off from everything), and one that refuses.
  const hung = net.createServer(() => undefined);
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.after(() => {
    hung.close();
  });
  const hungUrl = `http://127.0.0.1:${(hung.address() as net.AddressInfo).port}`;
  const refusedUrl = `http://127.0.0.1:${await freePort()}`;
  const client = new EtcdClient([hungUrl, refusedUrl, etcd.endpoints[1]!], 1500);
  t.after(() => client.close());
  const start = performance.now();
  const r = await client.txn([{ key: '/understudy/t6/k', target: 'CREATE', createRevision: 0 }], [{ put: { key: '/understudy/t6/k', value: 'v' } }]);
  const took = performance.now() - start;
  assert.equal(r.succeeded, true);
  assert.ok(took < 1500, `answered through the third member in ${took.toFixed(0)} ms (budget 1500 ms)`);
  assert.equal((await client.get('/understudy/t6/k'))?.value, 'v', 'the member that answered is asked first from now on');

  const none = new EtcdClient([hungUrl, refusedUrl], 600);
  t.after(() => none.close());
  const s0 = performance.now();
  await assert.rejects(none.get('/understudy/t6/k'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'US_STATE_STORE_UNAVAILABLE');
    assert.match(e.message, /no answer within \d+ ms/);
    assert.match(e.message, /ECONNREFUSED/);
    return true;
  });
  assert.ok(performance.now() - s0 < 1200, `gave up in ${(performance.now() - s0).toFixed(0)} ms (budget 600 ms)`);
});
