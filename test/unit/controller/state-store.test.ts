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
