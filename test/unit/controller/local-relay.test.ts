import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../../src/config/load-config.ts';
import { PartClients } from '../../../src/controller/clients.ts';
import { startRequest } from '../../../src/controller/site-facts.ts';
import { waitFor } from '../../../src/controller/timing.ts';
import { LocalRelay } from '../../../src/power/local-relay.ts';
import { isGroupAlive, isProcessAlive } from '../../../src/power/process-group.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { ROOT } from '../../support/cluster.ts';

test('local relay: on boots a real agent that runs the shop in its group; off cuts the whole group and confirms it', { timeout: 60_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-relay-'));
  const file = path.join(dir, 'understudy.yaml');
  fs.writeFileSync(
    file,
    `
controller: { listen: 127.0.0.1:29970, state: ${dir}/state }
director: { listen: 127.0.0.1:29971 }
storage:
  a: { path: ${dir}/a, listen: 127.0.0.1:29972 }
  b: { path: ${dir}/b, listen: 127.0.0.1:29973 }
hosts:
  r1: { address: 127.0.199.1, storage: a, power: local }
  r2: { address: 127.0.198.1, storage: b, power: local }
sites:
  shop:
    front: 127.0.0.1:29980
    app: { command: [node, examples/shop/server.js], port: 3000 }
    primary: r1
    standby: [r2]
`,
  );
  const config = loadConfig(file, { baseDir: ROOT });
  const store = new StateStore(config.controller.stateDir);
  const relay = new LocalRelay(config, store, path.join(dir, 'logs'));
  t.after(async () => {
    await relay.off('r1').catch(() => undefined);
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // A volume the shop can start on (what the storage processor's init would create).
  const volume = path.join(dir, 'a', 'volumes', 'shop');
  fs.cpSync(path.join(ROOT, 'examples/shop/seed'), volume, { recursive: true });
  const siteJson = path.join(volume, 'config/site.json');
  fs.writeFileSync(siteJson, JSON.stringify({ ...JSON.parse(fs.readFileSync(siteJson, 'utf8')), listen: { host: '127.0.199.1', port: 3000 } }));

  const on = await relay.on('r1');
  assert.equal(on.power, 'on');
  assert.ok(on.pid);
  assert.equal((await relay.on('r1')).pid, on.pid, 'on is idempotent');
  const clients = new PartClients(config);
  await waitFor(() => clients.agentStatus('r1', 300), { timeoutMs: 20_000, everyMs: 50, what: 'agent' });
  const st = await clients.startApp('r1', 'shop', startRequest(config, config.hosts.r1!, config.sites.shop!, 1));
  const appPid = st.sites[0]!.pid!;
  await waitFor(async () => (await fetch('http://127.0.0.1:3000/healthz'.replace('127.0.0.1', '127.0.199.1'))).ok, {
    timeoutMs: 20_000,
    everyMs: 50,
    what: 'shop',
  });

  const off = await relay.off('r1');
  assert.equal(off.power, 'off');
  assert.equal(isGroupAlive(on.pid!), false, 'no live process left in the host group');
  assert.equal(isProcessAlive(appPid), false, 'the app died with its host');
  assert.equal(relay.status('r1').power, 'off');
  await relay.off('r1');
});
