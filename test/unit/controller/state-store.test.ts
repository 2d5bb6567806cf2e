import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { StateStore } from '../../../src/state/state-store.ts';

test('runbooks, their journal and events survive a reopen (what a restarted controller reads)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-state-'));
  const a = new StateStore(dir);
  a.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  const rb = a.startRunbook('shop', 'failover', { oldPrimary: 'h1' });
  a.journal(rb.id, 'fence', 'begin');
  a.journal(rb.id, 'fence', 'end', { confirmed: true });
  a.addEvent({ site: 'shop', host: 'h1', kind: 'failure-detected', message: 'x', data: { n: 1 } });
  a.close();
  const b = new StateStore(dir);
  assert.deepEqual(
    b.runningRunbooks().map((r) => r.id),
    [rb.id],
  );
  assert.deepEqual(
    b.journalOf(rb.id).map((j) => `${j.step}:${j.phase}`),
    ['fence:begin', 'fence:end'],
  );
  assert.equal(b.getSite('shop')!.epoch, 1);
  assert.equal(b.listEvents()[0]!.data.n, 1);
  b.finishRunbook(rb.id, 'done');
  assert.equal(b.runningRunbooks().length, 0);
  b.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('site records kept in memory are what the database holds: after puts, state changes and a reopen; callers get copies', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-state-cache-'));
  try {
    const a = new StateStore(dir);
    a.putSite({ site: 'b', epoch: 1, primaryHost: 'h1', state: 'starting', replicaStorage: 'array-b' });
    a.putSite({ site: 'a', epoch: 1, primaryHost: 'h2', state: 'serving', replicaStorage: null });
    const rev = a.revision;
    a.setSiteState('b', 'serving');
    a.putSite({ site: 'a', epoch: 2, primaryHost: 'h3', state: 'failing-over', replicaStorage: 'array-a' });
    assert.ok(a.revision > rev, 'every change moves the revision');
    const seen = a.listSites();
    assert.deepEqual(
      seen.map((s) => [s.site, s.epoch, s.primaryHost, s.state, s.replicaStorage]),
      [
        ['a', 2, 'h3', 'failing-over', 'array-a'],
        ['b', 1, 'h1', 'serving', 'array-b'],
      ],
      'in site order, as last written',
    );
    seen[0]!.state = 'down';
    a.getSite('b')!.epoch = 99;
    assert.equal(a.getSite('a')!.state, 'failing-over', 'a caller changing its copy changes nothing');
    assert.equal(a.getSite('b')!.epoch, 1);
    a.close();
    const b = new StateStore(dir);
    assert.deepEqual(
      b.listSites(),
      seen.map((s, i) => (i === 0 ? { ...s, state: 'failing-over' } : s)),
      'a store opened afresh reads the same records',
    );
    b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('events added together are committed together, then heard in order; they survive a reopen', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-state-events-'));
  try {
    const a = new StateStore(dir);
    const heard: { id: number; inStore: number }[] = [];
    a.onEvent((e) => heard.push({ id: e.id, inStore: a.listEvents().length }));
    assert.deepEqual(a.addEvents([]), []);
    const recs = a.addEvents(
      ['s1', 's2', 's3'].map((site) => ({ site, host: null, kind: 'pool-empty', message: `${site} has no spare`, data: { waiting: false } })),
    );
    assert.deepEqual(
      recs.map((r) => r.site),
      ['s1', 's2', 's3'],
    );
    assert.deepEqual(
      heard.map((h) => h.id),
      recs.map((r) => r.id),
      'heard once each, in order',
    );
    assert.ok(
      heard.every((h) => h.inStore === 3),
      'every one was in the store before the first was heard',
    );
    a.close();
    const b = new StateStore(dir);
    assert.deepEqual(
      b.listEvents().map((e) => e.site),
      ['s1', 's2', 's3'],
    );
    b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a mirrored store queues every change in order, whichever method made it; a deleted row is queued as null; a load queues nothing', async () => {
  const s = new StateStore({ mirrored: true });
  let heard = 0;
  s.attachMirror({ onChange: () => heard++, flush: () => Promise.resolve() });
  s.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: null });
  const rb = s.startRunbook('shop', 'failover', { a: 1 });
  s.journal(rb.id, 'fence', 'begin');
  s.updateRunbookData(rb.id, { a: 2 });
  s.addEvents([
    { site: 'shop', host: null, kind: 'k', message: 'one', data: {} },
    { site: 'shop', host: null, kind: 'k', message: 'two', data: {} },
  ]);
  s.putRelay('h1', 'off', null, null);
  s.forgetRelay('h1');
  s.setSiteState('shop', 'failing-over');
  const changes = s.pendingChanges(100);
  assert.deepEqual(
    changes.map((c) => `${c.table}/${c.key}${c.row === null ? ' deleted' : ''}`),
    [
      'sites/shop',
      'runbooks/000000000001',
      'journal/000000000001',
      'runbooks/000000000001',
      'events/000000000001',
      'events/000000000002',
      'relays/h1',
      'relays/h1 deleted',
      'sites/shop',
    ],
  );
  assert.deepEqual(JSON.parse(String(changes[3]!.row!.data)), { a: 2 }, 'a row is queued as it is after the change');
  assert.equal(changes.at(-1)!.row!.state, 'failing-over');
  assert.ok(changes.every((c, i) => i === 0 || c.seq > changes[i - 1]!.seq));
  await new Promise((r) => setImmediate(r));
  assert.equal(heard, 1, 'the mirror hears once per tick, not once per row');

  s.changesTaken(changes[4]!.seq);
  assert.deepEqual(
    s.pendingChanges(100).map((c) => c.key),
    ['000000000002', 'h1', 'h1', 'shop'],
    'taken changes leave the outbox; the rest stay in order',
  );

  // What a mirror holds, loaded: every row back, nothing queued, ids go on after the loaded ones.
  const t = new StateStore({ mirrored: true });
  t.replaceAll(changes.filter((c) => c.row !== null && c.table !== 'relays').map((c) => ({ table: c.table, row: c.row! })));
  assert.deepEqual(t.pendingChanges(100), []);
  assert.equal(t.getSite('shop')?.state, 'failing-over');
  assert.deepEqual(
    t.journalOf(rb.id).map((j) => j.step),
    ['fence'],
  );
  assert.equal(t.addEvent({ site: null, host: null, kind: 'k', message: 'three', data: {} }).id, 3);
  s.close();
  t.close();
});

test('the embedded store: flush resolves at once (each write is durable when it returns)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-state-'));
  const s = new StateStore(dir);
  assert.equal(s.mirrored, false);
  s.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: null });
  await s.flush();
  s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the event log is bounded: the oldest go first, a batch at a time; the newest of each kind and site and any awaiting a notification stay', () => {
  const s = new StateStore({ mirrored: true });
  const first = s.addEvent({ site: 'shop', host: null, kind: 'failover-complete', message: 'the only failover', data: {} });
  const waiting = s.addEvent({ site: 'shop', host: null, kind: 'probe-failed', message: 'to be notified', data: {} });
  s.enqueueNotifications('ops', [waiting.id], waiting.id);
  s.addEvents(Array.from({ length: 300 }, (_, i) => ({ site: 'shop', host: null, kind: 'probe-failed', message: `p${i}`, data: {} })));
  assert.equal(s.pruneEvents(1000), 0, 'under the bound: nothing goes');
  s.changesTaken(s.lastChangeSeq());
  assert.equal(s.pruneEvents(100, 50), 50, 'at most a batch a call');
  assert.equal(s.pendingChanges(1000).filter((c) => c.table === 'events' && c.row === null).length, 50, 'each deletion goes to the mirror');
  while (s.pruneEvents(100, 50) > 0);
  const ids = s.listEvents({ limit: 5000 }).map((e) => e.id);
  assert.ok(ids.includes(first.id), "the site's last failover stays, however old");
  assert.ok(ids.includes(waiting.id), 'an event a notification waits for stays');
  assert.equal(ids.filter((id) => id > s.lastEventId() - 100).length, 100, 'the newest 100 stay');
  assert.equal(ids.length, 102);
  s.notificationAttempt(s.nextNotification('ops')!.row.id, { delivered: true });
  s.pruneEvents(100);
  assert.ok(!s.listEvents({ limit: 5000 }).some((e) => e.id === waiting.id), 'delivered: it may go');
  s.close();
});
