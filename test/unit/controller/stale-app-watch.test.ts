import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { UnderstudyConfig } from '../../../src/config/types.ts';
import type { ListenerOwner } from '../../../src/hosts/local-listeners.ts';
import { StaleAppWatch } from '../../../src/controller/stale-app-watch.ts';
import { StateStore } from '../../../src/state/state-store.ts';

/**
 * The stale-app watch decides by who answers (the host driver's ListenerLookup), not
 * by what answers: a real HTTP server answers on the standby's address in every case
 * here, and only the owner the lookup names changes.
 */
test("stale-primary: not for the primary's own process or a reader's; yes for a process outside or another host; one all-addresses warning", async (t) => {
  const { server, port, store } = await fixture(t, (_q, r) => {
    r.writeHead(200, { 'content-type': 'application/json' });
    r.end('{"ok":true}');
  });
  const config = {
    hosts: { h1: host('h1', '127.0.0.1'), h2: host('h2', '127.0.0.2') },
    sites: { shop: { name: 'shop', primary: 'h1', standby: ['h2'], app: { port }, health: { probe: { path: '/healthz' } } } },
  } as unknown as UnderstudyConfig;
  store.putSite({ site: 'shop', epoch: 3, primaryHost: 'h1', state: 'serving', replicaStorage: null });
  const owners: Record<string, ListenerOwner> = {
    '127.0.0.1': { kind: 'host', host: 'h1', bound: '0.0.0.0', allAddresses: true },
    '127.0.0.2': { kind: 'host', host: 'h1', bound: '0.0.0.0', allAddresses: true },
  };
  let reader = false;
  const watch = new StaleAppWatch(config, store, () => reader, { whoListens: (address) => owners[address] ?? { kind: 'nobody' } });
  const kinds = () => store.listEvents().map((e) => e.kind);

  await watch.tick();
  await watch.tick();
  assert.deepEqual(kinds(), ['app-listens-on-all-addresses'], "the primary's own process answers on h2's address: a warning, once; no stale-primary");
  assert.match(store.listEvents()[0]!.message, /Bind it to its host: pass \{\{host\.address\}\}/);

  owners['127.0.0.2'] = { kind: 'outside', bound: '127.0.0.2', allAddresses: false, process: 'pid 99 (node rogue.js)' };
  reader = true;
  await watch.tick();
  assert.deepEqual(kinds(), ['app-listens-on-all-addresses'], 'a reader host is not probed');
  reader = false;
  await watch.tick();
  await watch.tick();
  assert.deepEqual(kinds(), ['app-listens-on-all-addresses', 'stale-primary'], 'once per appearance');
  assert.match(
    store.listEvents()[1]!.message,
    /^shop answers on h2 \(127\.0\.0\.2:\d+\) by a process outside Understudy \(pid 99 \(node rogue\.js\)\), but its primary is h1 at epoch 3/,
  );

  owners['127.0.0.2'] = { kind: 'host', host: 'h1', bound: '0.0.0.0', allAddresses: true };
  await watch.tick();
  assert.deepEqual(kinds().slice(2), ['stale-primary-gone'], "the primary's process answering is not stale: the stale one is gone");

  owners['127.0.0.2'] = { kind: 'host', host: 'h2', bound: '127.0.0.2', allAddresses: false };
  await watch.tick();
  assert.match(store.listEvents()[3]!.message, /by a process of host h2, outside what Understudy started there/);
  owners['127.0.0.2'] = { kind: 'unknown', why: 'no /proc' };
  server.close();
  await watch.tick();
  assert.equal(kinds()[4], 'stale-primary-gone');
});

test('with many sites a pass probes at most 100 hosts, goes on where the last stopped, and judges each primary listener once per epoch', async (t) => {
  let requests = 0;
  const { port, store } = await fixture(t, (_q, r) => {
    requests++;
    r.end('{"ok":true}');
  });
  const sites: Record<string, unknown> = {};
  for (let i = 0; i < 250; i++) {
    sites[`s${i}`] = { name: `s${i}`, primary: 'h1', standby: ['h2'], app: { port }, health: { probe: { path: '/healthz' } } };
    store.putSite({ site: `s${i}`, epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: null });
  }
  const config = { hosts: { h1: host('h1', '127.0.0.1'), h2: host('h2', '127.0.0.2') }, sites } as unknown as UnderstudyConfig;
  const asked = new Map<string, number>();
  const watch = new StaleAppWatch(config, store, () => false, {
    whoListens: (address) => {
      asked.set(address, (asked.get(address) ?? 0) + 1);
      // h1's own process answers everywhere it is asked: nothing stale, nothing to warn of.
      return { kind: 'host', host: 'h1', bound: address, allAddresses: false };
    },
  });
  const perPass: number[] = [];
  for (let i = 0; i < 3; i++) {
    const before = requests;
    await watch.tick();
    perPass.push(requests - before);
  }
  assert.deepEqual(perPass, [100, 100, 100], 'each pass probes 100 standby addresses');
  assert.equal(asked.get('127.0.0.1'), 250, "after three passes every site's primary listener was judged, each once");
  await watch.tick();
  assert.equal(asked.get('127.0.0.1'), 250, 'not judged again at the same epoch');
  store.putSite({ site: 's120', epoch: 2, primaryHost: 'h1', state: 'serving', replicaStorage: null });
  for (let i = 0; i < 3; i++) await watch.tick();
  assert.equal(asked.get('127.0.0.1'), 251, 'a new epoch is judged again, once');
  assert.deepEqual(store.listEvents(), [], 'no event');
});

/** An HTTP server on the standby's address (127.0.0.2) and a state store, both removed after the test. */
async function fixture(t: TestContext, handler: http.RequestListener): Promise<{ server: http.Server; port: number; store: StateStore }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.2', r));
  t.after(() => server.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-stale-unit-'));
  const store = new StateStore(dir);
  t.after(() => {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { server, port: (server.address() as AddressInfo).port, store };
}

function host(name: string, address: string) {
  return { name, address, storage: 'a', power: 'local', profile: { cpus: 1, memoryMb: 512 }, agentPort: 7001, boot: true };
}
