import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EtcdClient } from '../../src/state/etcd-client.ts';
import { EtcdState } from '../../src/state/etcd-state.ts';
import { StateStore } from '../../src/state/state-store.ts';
import { startEtcd, type EtcdCluster } from '../support/etcd.ts';

/**
 * The controller's state in a real three-member etcd (etcd-state.ts): what a leader
 * writes is what the next one reads, in order and complete; etcd itself refuses the
 * writes of a term whose leader key is gone; a follower's view follows; and changes
 * made while etcd does not answer are sent, in order, once it does.
 */
const PREFIX = '/us-test';
const LEADER_KEY = `${PREFIX}/leader`;

async function withEtcd(t: { after: (fn: () => Promise<void>) => void }): Promise<{ etcd: EtcdCluster; client: EtcdClient }> {
  const etcd = await startEtcd(3);
  const client = new EtcdClient(etcd.endpoints, 1000);
  t.after(async () => {
    await client.close();
    await etcd.stop();
  });
  return { etcd, client };
}

/** Takes the leader key (as the lease does) and returns its create revision: the term's token. */
async function takeLeaderKey(client: EtcdClient, name: string): Promise<number> {
  const r = await client.txn(
    [{ key: LEADER_KEY, target: 'CREATE', createRevision: 0 }],
    [{ put: { key: LEADER_KEY, value: name } }, { range: { key: LEADER_KEY } }],
  );
  assert.ok(r.succeeded, `${name} took the leader key`);
  return r.ranges[1]![0]!.createRevision;
}

function leaderState(client: EtcdClient, token: number, onRefused?: () => void): { store: StateStore; state: EtcdState } {
  const store = new StateStore({ mirrored: true });
  const state = new EtcdState(store, { client, prefix: PREFIX, guard: { leaderKey: LEADER_KEY, token }, ...(onRefused ? { onRefused } : {}) });
  state.start();
  return { store, state };
}

function fill(store: StateStore): void {
  store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  store.putSite({ site: 'blog', epoch: 3, primaryHost: 'h2', state: 'starting', replicaStorage: null });
  const rb = store.startRunbook('shop', 'failover', { from: 'h1', reason: 'crash' });
  store.journal(rb.id, 'fence', 'begin');
  store.journal(rb.id, 'fence', 'end', { ms: 12 });
  store.updateRunbookData(rb.id, { from: 'h1', reason: 'crash', to: 'h2', epoch: 2 });
  store.addEvents(Array.from({ length: 30 }, (_, i) => ({ site: 'shop', host: null, kind: 'probe-failed', message: `probe ${i}`, data: { i } })));
  store.putRelay('h1', 'off', null, null);
  store.putRelay('h9', 'on', null, null);
  store.forgetRelay('h9');
  store.enqueueNotifications('ops', [1, 2, 3], 3);
  store.setSiteState('blog', 'serving');
}

function snapshot(store: StateStore): unknown {
  return {
    sites: store.listSites(),
    runbooks: store.listRunbooks().map((r) => ({ ...r, journal: store.journalOf(r.id) })),
    events: store.listEvents({ limit: 5000 }),
    relays: store.listRelays(),
    notify: store.notificationCounts(),
    cursor: store.notifyCursor('ops'),
  };
}

test(
  'etcd state: what a leader writes, the next leader reads complete and in order; ids go on from there; a follower view follows',
  { timeout: 60_000 },
  async (t) => {
    const { client } = await withEtcd(t);
    const token = await takeLeaderKey(client, 'c1');
    const { store, state } = leaderState(client, token);
    fill(store);
    await store.flush();
    assert.deepEqual(store.pendingChanges(10), [], 'every change left the outbox once etcd had it');
    const keys = (await client.range(`${PREFIX}/state/`)).kvs.map((k) => k.key);
    assert.ok(keys.includes(`${PREFIX}/state/sites/shop`) && !keys.includes(`${PREFIX}/state/relays/h9`), 'rows are keys; a deleted row is no key');

    const follower = new StateStore({ mirrored: true });
    const view = new EtcdState(follower, { client, prefix: PREFIX });
    await view.load();
    assert.deepEqual(snapshot(follower), snapshot(store), "the follower's view is the leader's state");
    assert.equal(await view.refresh(), false, 'nothing changed: no re-read');

    // More than one page of keys (500 per page), read at one revision.
    store.addEvents(Array.from({ length: 1200 }, (_, i) => ({ site: null, host: null, kind: 'bulk', message: `bulk ${i}`, data: {} })));
    await store.flush();
    assert.equal(await view.refresh(), true);
    assert.deepEqual(snapshot(follower), snapshot(store), 'a refresh reads every page');

    // The leader's term ends cleanly; the next one (another key, another token) starts from etcd.
    state.close();
    store.close();
    await client.txn([], [{ delete: { key: LEADER_KEY } }]);
    const token2 = await takeLeaderKey(client, 'c2');
    assert.ok(token2 > token, 'the next term has a higher token');
    const next = leaderState(client, token2);
    t.after(() => next.state.close());
    await new EtcdState(next.store, { client, prefix: PREFIX }).load();
    assert.deepEqual(snapshot(next.store), snapshot(follower), 'the next leader reads what the last one wrote');
    const lastId = next.store.lastEventId();
    const e = next.store.addEvent({ site: null, host: null, kind: 'controller-leads', message: 'c2 leads', data: {} });
    assert.equal(e.id, lastId + 1, 'event ids go on after the loaded ones');
    const rb = next.store.startRunbook('blog', 'restore', {});
    assert.equal(rb.id, 2, 'runbook ids too');
    await next.store.flush();
    await view.refresh();
    assert.equal(follower.listEvents({ afterId: lastId })[0]?.message, 'c2 leads');
    follower.close();
  },
);

test('etcd state: etcd refuses the writes of a term whose leader key is gone, and nothing of them lands', { timeout: 60_000 }, async (t) => {
  const { client } = await withEtcd(t);
  const token = await takeLeaderKey(client, 'c1');
  let refused = 0;
  const old = leaderState(client, token, () => refused++);
  t.after(() => old.state.close());
  old.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  await old.store.flush();

  // Another controller took over (the old one's lease ran out while it was paused, say).
  await client.txn([], [{ delete: { key: LEADER_KEY } }]);
  const token2 = await takeLeaderKey(client, 'c2');
  const now = leaderState(client, token2);
  t.after(() => now.state.close());
  await new EtcdState(now.store, { client, prefix: PREFIX }).load();
  now.store.putSite({ site: 'shop', epoch: 2, primaryHost: 'h2', state: 'serving', replicaStorage: 'array-a' });
  await now.store.flush();

  // The old leader, not knowing, writes a step of its own and flushes before acting.
  old.store.putSite({ site: 'shop', epoch: 2, primaryHost: 'h3', state: 'failing-over', replicaStorage: null });
  await assert.rejects(old.store.flush(), (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER', 'flush refuses: the step must not run');
  await assert.rejects(old.store.flush(), (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER', 'and every later flush too');
  assert.equal(refused, 1, 'the term hears it once');
  const kv = await client.get(`${PREFIX}/state/sites/shop`);
  assert.equal((JSON.parse(kv!.value) as { primary_host: string }).primary_host, 'h2', "etcd holds the new leader's record, nothing of the old one's");
});

test('etcd state: changes made while etcd has no quorum wait in order and are sent once it has; flush rejects meanwhile', { timeout: 90_000 }, async (t) => {
  const { etcd, client } = await withEtcd(t);
  const token = await takeLeaderKey(client, 'c1');
  const { store, state } = leaderState(client, token);
  t.after(() => state.close());
  store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  await store.flush();

  etcd.pause(0);
  etcd.pause(1);
  etcd.pause(2);
  t.after(() => {
    for (const i of [0, 1, 2]) etcd.resume(i);
  });
  const rb = store.startRunbook('shop', 'failover', {});
  store.journal(rb.id, 'fence', 'begin');
  await assert.rejects(store.flush(), (e: Error & { code?: string }) => e.code === 'US_STATE_STORE_UNAVAILABLE', 'no member answers: flush says so');
  store.journal(rb.id, 'fence', 'end');
  store.setSiteState('shop', 'failing-over');
  assert.ok(store.pendingChanges(100).length >= 4, 'the changes wait in the outbox');

  for (const i of [0, 1, 2]) etcd.resume(i);
  await store.flush();
  const view = new StateStore({ mirrored: true });
  await new EtcdState(view, { client, prefix: PREFIX }).load();
  assert.deepEqual(
    view.journalOf(rb.id).map((j) => `${j.step}:${j.phase}`),
    ['fence:begin', 'fence:end'],
    'the journal arrived complete, in order',
  );
  assert.equal(view.getSite('shop')?.state, 'failing-over');
  view.close();
});

test(
  "etcd state: a follower's view follows the leader's writes through etcd's watch, deletes included, and stops when told",
  { timeout: 60_000 },
  async (t) => {
    const { client } = await withEtcd(t);
    const token = await takeLeaderKey(client, 'c1');
    const { store, state } = leaderState(client, token);
    t.after(() => state.close());
    store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
    store.putRelay('h9', 'on', null, null);
    await store.flush();

    const view = new StateStore({ mirrored: true });
    const following = new AbortController();
    const done = new EtcdState(view, { client, prefix: PREFIX }).follow(following.signal, 100);
    t.after(() => following.abort());
    const until = async (what: string, cond: () => boolean) => {
      for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(cond(), what);
    };
    await until('the view read whole', () => view.getSite('shop')?.epoch === 1 && view.getRelay('h9') !== undefined);
    const heard: string[] = [];
    view.onEvent((e) => heard.push(e.message));
    view.onJournal((j, rb) => heard.push(`${rb.kind} ${j.step}:${j.phase}`));

    store.putSite({ site: 'shop', epoch: 2, primaryHost: 'h2', state: 'serving', replicaStorage: 'array-a' });
    store.forgetRelay('h9');
    const rb = store.startRunbook('shop', 'failover', {});
    store.journal(rb.id, 'fence', 'begin');
    await store.flush();
    await until(
      'the watch brought the changes',
      () => view.getSite('shop')?.epoch === 2 && view.getRelay('h9') === undefined && view.journalOf(rb.id).length === 1,
    );
    assert.deepEqual(snapshot(view), snapshot(store), 'the view is the leader state');
    assert.deepEqual(view.pendingChanges(10), [], 'nothing the view applies is queued back');
    store.addEvent({ site: 'shop', host: null, kind: 'k', message: 'live', data: {} });
    await store.flush();
    await until('live views hear the leader’s event', () => heard.includes('live'));
    assert.deepEqual(heard, ['failover fence:begin', 'live'], 'the journal step and the event, once each, in order');

    following.abort();
    await done;
    store.addEvent({ site: null, host: null, kind: 'after', message: 'after the follower stopped', data: {} });
    await store.flush();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(view.listEvents().filter((e) => e.kind === 'after').length, 0, 'a stopped view takes nothing more');
    let closed = 0;
    view.onClose(() => closed++);
    view.close();
    view.close();
    assert.equal(closed, 1, 'closing the view tells its live views once (an event stream ends, its client reconnects)');
  },
);
