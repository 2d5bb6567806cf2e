import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { PartClients } from '../../../src/controller/clients.ts';
import { Drills } from '../../../src/controller/drills.ts';
import type { RelayDriver } from '../../../src/power/relay.ts';
import type { VolumeStatus } from '../../../src/shared/contracts.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { cleanup, load } from '../config/helpers.ts';
import { SHARED } from './pool-fixture.ts';

after(cleanup);

/**
 * The drill's decisions (refusals and the choice of the spare) against a real state
 * store and stand-ins for relays, agents and the primary's replication status. The
 * drill's steps themselves run against real processes in test/e2e/drill.test.ts.
 */
function harness(opts: { on?: string[]; apps?: Record<string, string[]>; replication?: string; untrusted?: string[] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-drills-'));
  const store = new StateStore(dir);
  const powered: string[] = [];
  const relay: RelayDriver = {
    status: (host) => ({ host, power: opts.on?.includes(host) ? 'on' : 'off', pid: opts.on?.includes(host) ? 1 : null }),
    on: (host) => {
      powered.push(host);
      return Promise.resolve({ host, power: 'on', pid: 1 });
    },
    off: (host) => Promise.resolve({ host, power: 'off', pid: null }),
  };
  const clients = {
    agentStatus: (host: string) =>
      Promise.resolve({
        host,
        pid: 1,
        pgid: 1,
        sites: (opts.apps?.[host] ?? []).map((site) => ({ site, state: 'running', pid: 2, exitCode: null, since: 0 })),
      }),
  } as unknown as PartClients;
  const drills = new Drills({
    config: load(SHARED),
    store,
    relay,
    clients,
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    governor: {
      trust: (h: string) =>
        opts.untrusted?.includes(h)
          ? { trusted: false, state: 'recovering', why: 'it failed 2 s ago', heldUntil: null }
          : { trusted: true, state: 'trusted', why: '', heldUntil: null },
    } as never,
    volume: () =>
      ({
        site: 'shop',
        role: 'primary',
        epoch: 1,
        path: '/x',
        replication: { to: 'array-b', state: opts.replication ?? 'streaming', lagMs: 3, generation: 1 },
      }) as unknown as VolumeStatus,
  });
  store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'serving', replicaStorage: 'array-b' });
  store.putSite({ site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'serving', replicaStorage: 'array-b' });
  return {
    drills,
    store,
    powered,
    close: () => {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.equal((e as { code?: string }).code, 'US_DRILL_REFUSED', (e as Error).message);
    return (e as Error).message;
  }
  throw new Error('the drill was not refused');
}

test('a drill is refused, with the reason, while a runbook runs, and nothing is started', async () => {
  const h = harness();
  try {
    const rb = h.store.startRunbook('outlet', 'switchover', { target: 's2' });
    const why = await refusal(h.drills.run('shop'));
    assert.match(why, new RegExp(`^drill of shop refused: switchover #${rb.id} of outlet is running`));
    assert.deepEqual(
      h.store.listRunbooks().map((r) => r.kind),
      ['switchover'],
      'no drill runbook was created',
    );
    assert.deepEqual(h.powered, [], 'no host was powered on');
    assert.deepEqual(
      h.store.listEvents().map((e) => e.kind),
      [],
    );
  } finally {
    h.close();
  }
});

test('a drill is refused when no spare is free, naming each spare and what holds it', async () => {
  // s1 runs an app nothing records, s2 is not trusted.
  const h = harness({ on: ['s1'], apps: { s1: ['other'] }, untrusted: ['s2'] });
  try {
    const why = await refusal(h.drills.run('shop'));
    assert.equal(why, 'drill of shop refused: no spare of shop is free: s1 (runs other), s2 (not trusted: it failed 2 s ago)');
    assert.match(await refusal(h.drills.run('shop', { to: 'b1' })), /b1 is not one of shop's hosts/);
    assert.match(await refusal(h.drills.run('shop', { to: 'a1' })), /a1 \(the primary\)/);
    assert.deepEqual(h.store.listRunbooks(), []);
    assert.deepEqual(h.powered, []);
  } finally {
    h.close();
  }
});

test('a drill is refused when the site is not serving or its replica does not stream', async () => {
  const h = harness({ replication: 'error' });
  try {
    assert.match(await refusal(h.drills.run('shop')), /replica on array-b is error, not streaming/);
    h.store.setSiteState('shop', 'down');
    assert.match(await refusal(h.drills.run('shop')), /shop is down, not serving/);
    assert.deepEqual(h.store.listRunbooks(), []);
  } finally {
    h.close();
  }
});
