import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { PartClients } from '../../../src/controller/clients.ts';
import { FailoverRunbook } from '../../../src/controller/failover-runbook.ts';
import type { RunbookDeps } from '../../../src/controller/runbook-journal.ts';
import type { RelayDriver } from '../../../src/power/relay.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { cleanup, load } from '../config/helpers.ts';

after(cleanup);

/**
 * The decision a failover takes when the replica fails verification at its promotion
 * (the storage processor answers US_REPLICA_CORRUPT): a restore of the newest good
 * restore point onto the same target instead, or — without backups — a blocked runbook
 * with an alert. Real state store and journal; stand-ins for the parts. The runbook is
 * started past choose-target (journaled), and the stand-in agent refuses to start the
 * app so that the run stops right after the decision's storage-side effects.
 */
const CONFIG = (backup: boolean) => `storage:
  array-a: { path: data/array-a }
  array-b: { path: data/array-b }
  vault: { path: data/vault, backup: true }
hosts:
  h1: { address: 127.0.1.1, storage: array-a }
  h2: { address: 127.0.2.1, storage: array-b }
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: h1
    standby: [h2]
${backup ? '    volume: { backup: { to: vault, every: 1s, keep: 5 } }\n' : ''}`;

const STOP = new UnderstudyError('US_UNREACHABLE', 'test: the agent is not there');

function harness(backup: boolean) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-refuse-'));
  const store = new StateStore(dir);
  const calls: string[] = [];
  const relay: RelayDriver = {
    status: (host) => ({ host, power: 'on', pid: 1 }),
    on: (host) => Promise.resolve({ host, power: 'on', pid: 1 }),
    off: (host) => Promise.resolve({ host, power: 'off', pid: null }),
  };
  const clients = {
    storageUrl: (s: string) => `http://${s}`,
    demote: (s: string, _site: string, epoch: number) => {
      calls.push(`demote ${s} ${epoch}`);
      return Promise.resolve({});
    },
    promote: (s: string, site: string, epoch: number) => {
      calls.push(`promote ${s} ${epoch}`);
      return Promise.reject(
        new UnderstudyError(
          'US_REPLICA_CORRUPT',
          `the copy of ${site} on storage ${s} failed verification before promotion (orders.db: quick-check (page 3 is never used))`,
          { verification: { problems: [{ file: 'orders.db', kind: 'quick-check', detail: 'page 3 is never used' }] } },
        ),
      );
    },
    restore: (s: string, _site: string, body: { epoch: number; point: string; vaultUrl: string }) => {
      calls.push(`restore ${s} ${body.epoch} ${body.point} ${body.vaultUrl}`);
      return Promise.resolve({ point: '2026-11-25T07-00-00.000Z', takenAt: 1_000, bytes: 10, ms: 5, skipped: [] });
    },
    transform: () => Promise.resolve({ changes: [] }),
    agentStatus: (host: string) => Promise.resolve({ host, pid: 1, pgid: 1, sites: [] }),
    startApp: () => Promise.reject(STOP),
    putRoute: () => Promise.resolve({}),
  } as unknown as PartClients;
  const deps = {
    config: load(CONFIG(backup)),
    store,
    relay,
    clients,
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    stopping: () => false,
  } as RunbookDeps;
  store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  const rb = store.startRunbook('shop', 'failover', {
    oldPrimary: 'h1',
    oldEpoch: 1,
    reason: 'crash',
    evidence: {},
    detectedAt: 5_000,
    lastHealthyAt: 4_900,
    target: 'h2',
    newEpoch: 2,
  });
  for (const s of ['hold', 'fence', 'choose-target']) {
    store.journal(rb.id, s, 'begin');
    store.journal(rb.id, s, 'end');
  }
  return {
    deps,
    store,
    calls,
    rb,
    run: async () =>
      new FailoverRunbook(
        deps,
        store.listRunbooks('shop').find((r) => r.id === rb.id)!,
      )
        .run()
        .catch((e: Error) => e),
    steps: () => store.journalOf(rb.id).map((j) => `${j.step}:${j.phase}`),
    kinds: () => store.listEvents({ site: 'shop' }).map((e) => e.kind),
    close: () => {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

test("a replica refused at promotion is replaced by a restore of the newest good point onto the same target, at the failover's epoch; a resumed runbook does not promote again", async () => {
  const h = harness(true);
  try {
    const err = await h.run();
    assert.equal((err as UnderstudyError).code, 'US_UNREACHABLE', 'stopped where the stand-in agent refused');
    assert.deepEqual(h.calls, ['demote array-a 2', 'promote array-b 2', 'demote array-a 2', 'restore array-b 2 latest-good http://vault']);
    const refused = h.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'promotion-refused');
    assert.ok(refused, 'the refusal is an event');
    assert.match(refused.message, /failed verification before promotion.*Restoring the newest good restore point from vault onto h2/s);
    assert.deepEqual(refused.data.problems, [{ file: 'orders.db', kind: 'quick-check', detail: 'page 3 is never used' }]);
    assert.ok(h.steps().includes('promote:error') && h.steps().includes('replica-refused:end') && h.steps().includes('restore:end'));
    const rec = h.store.getSite('shop')!;
    assert.deepEqual([rec.epoch, rec.primaryHost, rec.replicaStorage], [2, 'h2', null], 'the restored copy on h2 is the primary at the new epoch');

    // A controller restarted here resumes the same record: the journaled decision stands.
    h.calls.length = 0;
    await h.run();
    assert.deepEqual(h.calls, [], 'neither promoted nor restored again');
    assert.equal(h.kinds().filter((k) => k === 'promotion-refused').length, 1);
  } finally {
    h.close();
  }
});

test('died before the refusal was journaled: the promotion is refused again, the same way, and only then restored', async () => {
  const h = harness(true);
  try {
    h.store.journal(h.rb.id, 'promote', 'begin'); // the controller died inside the promote step
    await h.run();
    assert.deepEqual(h.calls.slice(0, 2), ['demote array-a 2', 'promote array-b 2']);
    assert.equal(h.calls.filter((c) => c.startsWith('restore')).length, 1);
  } finally {
    h.close();
  }
});

test('without backups, a refused replica stops the failover blocked, with an alert that says an operator must act', async () => {
  const h = harness(false);
  try {
    const err = await h.run();
    assert.equal((err as UnderstudyError).code, 'US_REPLICA_CORRUPT');
    assert.ok(!h.calls.some((c) => c.startsWith('restore')), 'nothing to restore from');
    assert.equal(h.store.listRunbooks('shop').find((r) => r.id === h.rb.id)!.status, 'blocked');
    const alert = h.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'failover-blocked');
    assert.ok(alert);
    assert.match(alert.message, /has no backups.*an operator must act/s);
    assert.equal(h.store.getSite('shop')!.state, 'down');
  } finally {
    h.close();
  }
});
