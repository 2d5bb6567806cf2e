import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildStatus } from '../../../src/controller/status-view.ts';
import { formatStatus } from '../../../src/cli/format.ts';
import type { DatabaseStatus, VolumeStatus } from '../../../src/shared/contracts.ts';
import type { RelayDriver } from '../../../src/power/relay.ts';
import { cleanup, load, MINIMAL } from '../config/helpers.ts';

after(cleanup);

const relay: RelayDriver = {
  on: () => {
    throw new Error('not here');
  },
  off: () => {
    throw new Error('not here');
  },
  status: (host) => ({ host, power: 'on', pid: 123 }) as ReturnType<RelayDriver['status']>,
};

function view(databases: DatabaseStatus[], extra: Partial<NonNullable<VolumeStatus['replication']>> = {}) {
  const config = load(MINIMAL);
  const vol: VolumeStatus = {
    site: 'shop',
    role: 'primary',
    epoch: 1,
    path: '/x',
    replication: { to: 'array-b', state: 'streaming', lagMs: Math.max(0, ...databases.map((d) => d.lagMs)), generation: 1, databases, ...extra },
  };
  return buildStatus({
    config,
    relay,
    monitors: new Map(),
    storageUp: () => true,
    sites: [{ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b', updatedAt: 0 }],
    volume: (storage, site) => (storage === 'array-a' && site === 'shop' ? vol : undefined),
  });
}

const walDb: DatabaseStatus = { path: 'orders.db', mode: 'wal', method: 'wal-frames', state: 'streaming', protected: true, lagMs: 2 };
const snapDb: DatabaseStatus = {
  path: 'notes.sqlite',
  mode: 'rollback',
  method: 'snapshots',
  state: 'streaming',
  protected: true,
  lagMs: 9,
  reason: 'rollback-journal mode',
  snapshots: 4,
  lastSnapshotMs: 3,
};

test('status lists every database of the site with its mode, method, state and lag; all protected: serving', () => {
  const st = view([walDb, snapDb], { lagOf: 'notes.sqlite' });
  const s = st.sites[0]!;
  assert.equal(s.state, 'serving');
  assert.deepEqual(s.databases, [
    { path: 'orders.db', mode: 'wal', method: 'wal-frames', state: 'streaming', protected: true, lagMs: 2 },
    { path: 'notes.sqlite', mode: 'rollback', method: 'snapshots', state: 'streaming', protected: true, lagMs: 9, reason: 'rollback-journal mode' },
  ]);
  assert.equal(s.replication.lagMs, 9, "the site's lag is the worst database's");
  assert.equal(s.replication.lagOf, 'notes.sqlite');
  assert.equal(s.replication.unprotected, undefined);
  const text = formatStatus(st);
  assert.match(text, /SITE\s+DATABASE\s+MODE\s+REPLICATED BY\s+STATE\s+LAG/);
  assert.match(text, /shop\s+notes\.sqlite\s+rollback\s+snapshots\s+streaming\s+9 ms/);
  assert.match(text, /shop\s+orders\.db\s+wal\s+wal-frames\s+streaming\s+2 ms/);
});

test('a site with an unprotected database is degraded and names it', () => {
  const bad: DatabaseStatus = { ...snapDb, state: 'error', protected: false, lagMs: 4000, lastError: '/v/notes.sqlite: cannot take a consistent snapshot' };
  const st = view([walDb, bad]);
  const s = st.sites[0]!;
  assert.equal(s.state, 'degraded');
  assert.deepEqual(s.replication.unprotected, ['notes.sqlite']);
  assert.equal(s.replication.state, 'streaming', "the volume's other parts still stream");
  assert.equal(s.databases[1]!.lastError, '/v/notes.sqlite: cannot take a consistent snapshot');
  assert.match(formatStatus(st), /notes\.sqlite\s+rollback\s+snapshots\s+error \(unprotected\)\s+4000 ms/);
  // An empty database (never written) is nothing to protect: not degraded.
  const empty: DatabaseStatus = { path: 'later.db', mode: 'empty', method: 'none', state: 'none', protected: true, lagMs: 0 };
  assert.equal(view([walDb, empty]).sites[0]!.state, 'serving');
});

test('status text: with several controllers, the first line says which answered and who leads, or that none does and since when', () => {
  const st = view([walDb]);
  assert.doesNotMatch(formatStatus(st), /controller/, 'one controller: no such line');
  const role = { name: 'c2', role: 'follower' as const, leader: 'c1', leaderApi: '10.0.1.10:7070', token: 12, storeUnavailable: null };
  assert.match(formatStatus({ ...st, controller: role } as typeof st).split('\n')[0]!, /^controller c2 follows c1 \(10\.0\.1\.10:7070\)$/);
  assert.match(formatStatus({ ...st, controller: { ...role, role: 'leader', name: 'c1' } } as typeof st).split('\n')[0]!, /^controller c1 leads \(term 12\)$/);
  assert.match(
    formatStatus({
      ...st,
      controller: { ...role, role: 'unknown', leader: null, storeUnavailable: { since: 0, error: 'no etcd member answered' } },
    } as typeof st).split('\n')[0]!,
    /^controller c2: no controller leads; etcd has not answered since 1970-01-01T00:00:00\.000Z \(no etcd member answered\): no automatic action$/,
  );
});
