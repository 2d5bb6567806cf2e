import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

/** `sites.X.volume.sync`: sync mode's confirmation timeout and what happens when the replica is lost. */

after(cleanup);

function withVolume(volume: string): string {
  return `${MINIMAL}    volume:\n${volume
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n')}\n`;
}

test('sync mode without volume.sync gets the defaults (degrade, 2s)', () => {
  const c = load(withVolume('replication: sync'));
  assert.deepEqual(c.sites.shop?.volume.sync, { onReplicaLost: 'degrade', timeoutMs: 2000 });
});

test('async mode without volume.sync has none', () => {
  const c = load(MINIMAL);
  assert.equal(c.sites.shop?.volume.sync, undefined);
});

test('volume.sync as written: strict, 500ms; a partial block gets the other default', () => {
  const c = load(withVolume('replication: sync\nsync: { onReplicaLost: strict, timeout: 500ms }'));
  assert.deepEqual(c.sites.shop?.volume.sync, { onReplicaLost: 'strict', timeoutMs: 500 });
  const d = load(withVolume('replication: sync\nsync: { timeout: 1.5s }'));
  assert.deepEqual(d.sites.shop?.volume.sync, { onReplicaLost: 'degrade', timeoutMs: 1500 });
  const e = load(withVolume('replication: sync\nsync: {}'));
  assert.deepEqual(e.sites.shop?.volume.sync, { onReplicaLost: 'degrade', timeoutMs: 2000 });
});

test('bad volume.sync values are named with their place', () => {
  const text = withVolume('replication: sync\nsync: { onReplicaLost: panic, timeout: 2, extra: 1 }');
  const got = lines(text);
  assert.ok(
    got.some((l) => /sites\.shop\.volume\.sync\.onReplicaLost: must be degrade or strict$/.test(l)),
    got.join('\n'),
  );
  assert.ok(
    got.some((l) => /sites\.shop\.volume\.sync\.timeout: must be a duration from 1ms to 60s, like 2s$/.test(l)),
    got.join('\n'),
  );
  const tooLong = lines(withVolume('replication: sync\nsync: { timeout: 2m }'));
  assert.ok(
    tooLong.some((l) => /sites\.shop\.volume\.sync\.timeout: must be a duration from 1ms to 60s/.test(l)),
    tooLong.join('\n'),
  );
  assert.ok(
    got.some((l) => /sites\.shop\.volume\.sync/.test(l) && /extra/.test(l)),
    got.join('\n'),
  );
  for (const l of got) assert.match(l, /^\d+:\d+: /);
});
