import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { PartClients } from '../../../src/controller/clients.ts';
import type { RunbookDeps } from '../../../src/controller/runbook-journal.ts';
import { chooseTarget } from '../../../src/controller/target-choice.ts';
import type { RelayDriver } from '../../../src/power/relay.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { cleanup, load } from '../config/helpers.ts';
import { SHARED } from './pool-fixture.ts';

after(cleanup);

/**
 * chooseTarget against a real state store and stand-ins for the relays and the
 * agents (which host is powered, which apps each agent runs): the decisions, the
 * waiting and the events, without processes.
 */
function harness(opts: { off?: string[]; apps?: Record<string, string[]>; readers?: { site: string; host: string }[] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-target-'));
  const store = new StateStore(dir);
  let stopping = false;
  const relay: RelayDriver = {
    status: (host) => ({ host, power: opts.off?.includes(host) ? 'off' : 'on', pid: 1 }),
    on: (host) => Promise.resolve({ host, power: 'on', pid: 1 }),
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
  const deps: RunbookDeps = {
    config: load(SHARED),
    store,
    relay,
    clients,
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    stopping: () => stopping,
    readers: () => opts.readers ?? [],
  };
  return {
    deps,
    store,
    stop: () => {
      stopping = true;
    },
    close: () => {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts a failover runbook record for `site` and asks for its target the way FailoverRunbook does. */
function failover(h: ReturnType<typeof harness>, site: 'shop' | 'outlet', failed: string, detectedAt: number) {
  const rb = h.store.startRunbook(site, 'failover', { oldPrimary: failed, detectedAt });
  const data: Record<string, unknown> = { ...rb.data };
  const choice = chooseTarget(h.deps, h.deps.config.sites[site]!, {
    failed,
    replicaStorage: 'array-b',
    detectedAt,
    commit: (host) => {
      data.target = host;
      h.store.updateRunbookData(rb.id, data);
    },
  });
  return { rb, choice };
}

function kinds(store: StateStore, site: string): string[] {
  return store.listEvents({ site }).map((e) => e.kind);
}

test('target choice: two sites fail at once over one shared spare — exactly one takes it (the higher priority), the other waits down and takes it once it is returned', async () => {
  const h = harness();
  try {
    h.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    h.store.putSite({ site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'failing-over', replicaStorage: 'array-b' });
    // shop failed first, but outlet has priority 5.
    const shop = failover(h, 'shop', 'a1', 1000);
    const outlet = failover(h, 'outlet', 'b1', 1500);
    assert.deepEqual(await outlet.choice, { host: 's1' });
    const lost = await Promise.race([shop.choice.then(() => 'granted'), new Promise((r) => setTimeout(() => r('waiting'), 600))]);
    assert.equal(lost, 'waiting');
    assert.equal(h.store.getSite('shop')!.state, 'down');
    const events = h.store.listEvents({ site: 'shop' });
    const denied = events.find((e) => e.kind === 'spare-denied' || e.kind === 'pool-empty')!;
    assert.ok(denied, `an event says why: ${kinds(h.store, 'shop').join(', ')}`);
    assert.match(denied.message, /s1/);
    assert.match(denied.message, /outlet/);
    assert.match(denied.message, /priority 5/);
    assert.equal(kinds(h.store, 'shop').filter((k) => k === denied.kind).length, 1, 'one event per reason, not one per poll');

    // outlet is promoted on s1 and serves; shop still waits, now because s1 is outlet's primary.
    h.store.finishRunbook(outlet.rb.id, 'done');
    h.store.putSite({ site: 'outlet', epoch: 2, primaryHost: 's1', state: 'serving', replicaStorage: 'array-a' });
    await new Promise((r) => setTimeout(r, 600));
    const empty = h.store
      .listEvents({ site: 'shop' })
      .filter((e) => e.kind === 'pool-empty')
      .at(-1)!;
    assert.match(empty.message, /s1 is the primary of outlet \(priority 5\)/);
    assert.equal(h.store.getSite('shop')!.state, 'down');

    // outlet fails back to b1: s1 is returned, and shop takes it.
    h.store.putSite({ site: 'outlet', epoch: 3, primaryHost: 'b1', state: 'serving', replicaStorage: 'array-b' });
    assert.deepEqual(await shop.choice, { host: 's1' });
    assert.equal(h.store.getSite('shop')!.state, 'failing-over');
    assert.equal(kinds(h.store, 'shop').at(-1), 'spare-granted');
  } finally {
    h.close();
  }
});

test('target choice: a spare taken by one site is not given to the next, even when its agent looks free', async () => {
  const h = harness();
  try {
    h.store.putSite({ site: 'shop', epoch: 2, primaryHost: 's1', state: 'serving', replicaStorage: 'array-a' });
    h.store.putSite({ site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'failing-over', replicaStorage: 'array-b' });
    const outlet = failover(h, 'outlet', 'b1', 1000);
    await new Promise((r) => setTimeout(r, 300));
    const ev = h.store.listEvents({ site: 'outlet' }).find((e) => e.kind === 'pool-empty');
    assert.ok(ev, 'pool-empty at once');
    assert.deepEqual((ev.data.blockers as unknown[])[0], { host: 's1', why: 'held', site: 'shop', as: 'primary', priority: 0 });
    h.stop();
    await assert.rejects(outlet.choice, (e: Error & { code?: string }) => e.code === 'US_STOPPING');
  } finally {
    h.close();
  }
});

test('target choice: an agent that runs an app nothing records is not a target; a cold spare is', async () => {
  const h = harness({ apps: { s1: ['blog'] } });
  try {
    h.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    const shop = failover(h, 'shop', 'a1', 1000);
    await new Promise((r) => setTimeout(r, 300));
    const ev = h.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'pool-empty')!;
    assert.match(ev.message, /s1 is not usable now \(it runs blog\)/);
    h.stop();
    await assert.rejects(shop.choice);
  } finally {
    h.close();
  }
  const cold = harness({ off: ['s1'] });
  try {
    cold.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    assert.deepEqual(await failover(cold, 'shop', 'a1', 1000).choice, { host: 's1' });
  } finally {
    cold.close();
  }
});

test("target choice: no standby on the replica's storage system is pool-empty and US_NO_TARGET at once; a held --to is refused at once", async () => {
  const h = harness();
  try {
    h.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-c' });
    await assert.rejects(
      chooseTarget(h.deps, h.deps.config.sites.shop!, { failed: 'a1', replicaStorage: 'array-c', detectedAt: 1, commit: () => undefined }),
      (e: Error & { code?: string }) => e.code === 'US_NO_TARGET' && /only a restore onto another host or a re-seed/.test(e.message),
    );
    assert.deepEqual(kinds(h.store, 'shop'), ['pool-empty']);
    h.store.putSite({ site: 'outlet', epoch: 2, primaryHost: 's1', state: 'serving', replicaStorage: 'array-a' });
    await assert.rejects(
      chooseTarget(h.deps, h.deps.config.sites.shop!, { failed: 'a1', replicaStorage: 'array-b', requested: 's1', detectedAt: 1, commit: () => undefined }),
      (e: Error & { code?: string }) => e.code === 'US_NO_TARGET' && /s1 is the primary of outlet/.test(e.message),
    );
  } finally {
    h.close();
  }
});

test('target choice: a reader of another site is taken back for a failover when no host is free; a free host comes first', async () => {
  const h = harness({ apps: { s1: ['outlet'] }, readers: [{ site: 'outlet', host: 's1' }] });
  try {
    h.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    h.store.putSite({ site: 'outlet', epoch: 1, primaryHost: 'b1', state: 'serving', replicaStorage: 'array-b' });
    assert.deepEqual(await failover(h, 'shop', 'a1', 1000).choice, { host: 's1', reclaim: { from: 'outlet' } });
  } finally {
    h.close();
  }
  // The same app on s1 with no reader recorded is not taken: nothing says whose it is.
  const unrecorded = harness({ apps: { s1: ['outlet'] } });
  try {
    unrecorded.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    const shop = failover(unrecorded, 'shop', 'a1', 1000);
    await new Promise((r) => setTimeout(r, 300));
    assert.match(unrecorded.store.listEvents({ site: 'shop' }).find((e) => e.kind === 'pool-empty')!.message, /s1 is not usable now \(it runs outlet\)/);
    unrecorded.stop();
    await assert.rejects(shop.choice);
  } finally {
    unrecorded.close();
  }
});

test('target choice: an untrusted spare is not taken; its changing reason (time left in a hold-out) does not repeat the event', async () => {
  const h = harness();
  let trustedNow = false;
  h.deps.governor = {
    trust: (host: string) => ({
      host,
      state: trustedNow ? 'trusted' : 'held-out',
      trusted: trustedNow,
      goodProbes: 0,
      rise: 2,
      flaps: 1,
      heldUntil: null,
      lastFailureAt: 1,
      trustedSince: null,
      why: `${host} flapped: held out for ${Date.now() % 100_000} ms more`,
    }),
  };
  try {
    h.store.putSite({ site: 'shop', epoch: 1, primaryHost: 'a1', state: 'failing-over', replicaStorage: 'array-b' });
    const shop = failover(h, 'shop', 'a1', 1000);
    await new Promise((r) => setTimeout(r, 900));
    const waits = h.store.listEvents({ site: 'shop' }).filter((e) => e.kind === 'pool-empty');
    assert.equal(waits.length, 1, 'one event for one reason');
    assert.match(waits[0]!.message, /s1 is not usable now \(not trusted: s1 flapped/);
    trustedNow = true;
    assert.deepEqual(await shop.choice, { host: 's1' });
  } finally {
    h.close();
  }
});
