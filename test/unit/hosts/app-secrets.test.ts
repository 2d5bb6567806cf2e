import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AppProcess } from '../../../src/hosts/app-process.ts';
import { readSecretRef } from '../../../src/shared/cluster-transport.ts';

test('an app never inherits the API token nor the variable the cluster secret was read from; other variables pass', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-app-secrets-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  process.env.UNDERSTUDY_TOKEN = 'api-token-0123456789abcdef';
  process.env.SHOP_CLUSTER_SECRET = 'cluster-secret-0123456789abcdef';
  process.env.SHOP_PLAIN_SETTING = 'kept';
  t.after(() => {
    delete process.env.UNDERSTUDY_TOKEN;
    delete process.env.SHOP_CLUSTER_SECRET;
    delete process.env.SHOP_PLAIN_SETTING;
  });
  // The agent reads the cluster secret from the environment at start (partSecurity).
  assert.equal(readSecretRef({ env: 'SHOP_CLUSTER_SECRET' }, 'cluster.secret'), 'cluster-secret-0123456789abcdef');

  const out = path.join(dir, 'env.json');
  const app = new AppProcess('shop', path.join(dir, 'app.log'));
  app.start({
    epoch: 1,
    // Written whole, then renamed into place: the file appears only when complete, so the
    // wait below never reads a half-written file.
    command: [
      process.execPath,
      '-e',
      `const fs = require('fs'); fs.writeFileSync(${JSON.stringify(`${out}.tmp`)}, JSON.stringify(process.env)); fs.renameSync(${JSON.stringify(`${out}.tmp`)}, ${JSON.stringify(out)})`,
    ],
    cwd: dir,
    dataDir: dir,
    env: {},
    mode: 'rw',
  });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await app.stop();
  const env = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, string>;
  assert.equal(env.SHOP_PLAIN_SETTING, 'kept', 'the app got the environment (the check can see variables)');
  assert.equal(env.UNDERSTUDY_TOKEN, undefined);
  assert.equal(env.SHOP_CLUSTER_SECRET, undefined);
  assert.ok(!Object.values(env).some((v) => v.includes('0123456789abcdef')), 'no value holds either secret');
});
