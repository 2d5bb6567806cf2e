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
