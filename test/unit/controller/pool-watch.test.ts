import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { PoolWatch } from '../../../src/controller/pool-watch.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { cleanup, load } from '../config/helpers.ts';
import { SHARED } from './pool-fixture.ts';

after(cleanup);

test('pool watch: a serving site whose last spare another site took hears it at once, once, and again when a spare is free', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-poolwatch-'));
  const store = new StateStore(dir);
  try {
    const config = load(SHARED);
    const readers: { site: string; host: string }[] = [];
    const watch = new PoolWatch({ config, store, readers: () => readers });
    const pool = () => store.listEvents().filter((e) => e.kind === 'pool-empty' || e.kind === 'pool-refilled');
    store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'serving', replicaStorage: 'array-b' });
    store.putSite({ site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'serving', replicaStorage: 'array-b' });
    watch.check();
    assert.deepEqual(pool(), [], 'nothing to say while every site has a spare');

    // shop fails over to s1; its replica goes to array-a.
    store.putSite({ site: 'shop', epoch: 2, primaryHost: 's1', state: 'serving', replicaStorage: 'array-a' });
    watch.check();
    watch.check();
    const said = pool();
    // shop, on s1 now, would need a standby on array-a: s2 is one, and it is free.
    assert.deepEqual(
      said.map((e) => [e.site, e.kind]),
      [['outlet', 'pool-empty']],
    );
    assert.match(
      said[0]!.message,
      /^outlet \(priority 5\) serves on b1 but has no spare left to fail over to: s1 is the primary of shop \(priority 0\)\. A failure of b1 now would leave outlet down/,
    );
    assert.equal(said[0]!.data.waiting, false);

    // A reader of another site does not empty a pool (a failover takes it back).
    readers.push({ site: 'outlet', host: 's2' });
    watch.check();
    assert.equal(pool().length, 1);

    // shop fails back to a1: s1 is free for outlet again.
    store.putSite({ site: 'shop', epoch: 3, primaryHost: 'a1', state: 'serving', replicaStorage: 'array-b' });
    watch.check();
    assert.deepEqual(
      pool()
        .slice(1)
        .map((e) => [e.site, e.kind]),
      [['outlet', 'pool-refilled']],
    );
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("pool watch: a site with no standby on its replica's storage system is told so", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-poolwatch-'));
  const store = new StateStore(dir);
  try {
    const watch = new PoolWatch({ config: load(SHARED), store });
    store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'serving', replicaStorage: 'vault-x' });
    watch.check();
    const [e] = store.listEvents();
    assert.equal(e!.kind, 'pool-empty');
    assert.match(e!.message, /no standby is attached to vault-x, which holds its replica/);
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
