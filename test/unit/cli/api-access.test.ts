import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { apiAccess } from '../../../src/cli/api-client.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';

/**
 * The API commands (status, events, failover, …) read only the controller's address,
 * its token and the cluster CA from the config, with a light YAML reader; anything
 * they cannot take from it goes through the full config pipeline.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-api-access-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function configFile(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const env = { UNDERSTUDY_API: process.env.UNDERSTUDY_API, UNDERSTUDY_TOKEN: process.env.UNDERSTUDY_TOKEN, UNDERSTUDY_CA: process.env.UNDERSTUDY_CA };
delete process.env.UNDERSTUDY_API;
delete process.env.UNDERSTUDY_TOKEN;
delete process.env.UNDERSTUDY_CA;
after(() => {
  for (const [k, v] of Object.entries(env)) if (v !== undefined) process.env[k] = v;
});

test('the address, token file and CA come from the config, relative paths beside it; the rest of the file is not validated', async () => {
  fs.writeFileSync(path.join(dir, 'api-token'), 's3cret-token\n');
  fs.writeFileSync(path.join(dir, 'ca.pem'), 'PEM');
  const file = configFile(
    'block.yaml',
    'controller:\n  listen: 127.0.0.9:7444\n  token: { file: api-token }\ncluster:\n  tls: { ca: ca.pem }\nsites: { this: [is, not, a, valid, section] }\n',
  );
  const a = await apiAccess({ config: file });
  assert.deepEqual(a, { base: 'https://127.0.0.9:7444', others: [], token: 's3cret-token', ca: Buffer.from('PEM') });
});

test('no controller section: the default address, no token', async () => {
  const file = configFile('none.yaml', 'hosts: {}\n');
  const a = await apiAccess({ config: file });
  assert.equal(a.base, 'http://127.0.0.1:7070');
  assert.equal(a.token, null);
});

test('a token from the environment variable the config names; --api wins over the config', async () => {
  process.env.MY_TOKEN_VAR = 'from-env';
  try {
    const file = configFile('env.yaml', 'controller: { listen: "127.0.0.1:7555", token: { env: MY_TOKEN_VAR } }\n');
    assert.deepEqual(await apiAccess({ config: file }), { base: 'http://127.0.0.1:7555', others: [], token: 'from-env', ca: null });
    assert.equal((await apiAccess({ config: file, api: 'http://127.0.0.2:9999/' })).base, 'http://127.0.0.2:9999');
  } finally {
    delete process.env.MY_TOKEN_VAR;
  }
});

test('an address that is not one goes through the full pipeline, which names the place in the file', async () => {
  const file = configFile('bad.yaml', 'controller:\n  listen: not-an-address\n');
  await assert.rejects(
    () => apiAccess({ config: file }),
    (e: unknown) => e instanceof UnderstudyError && /bad\.yaml:2:\d+/.test(e.message) && /controller\.listen/.test(e.message),
  );
});

test('a file that is not YAML goes through the full pipeline too, and its error says where', async () => {
  const file = configFile('broken.yaml', 'controller: [unclosed\n');
  await assert.rejects(
    () => apiAccess({ config: file }),
    (e: unknown) => e instanceof UnderstudyError && /broken\.yaml/.test(e.message),
  );
});

test('several controllers: the other members are the next addresses to try, controller.listen first; --api tries only itself', async () => {
  const file = configFile(
    'members.yaml',
    'controller: { listen: "127.0.0.1:7070", members: { c1: "127.0.0.1:7070", c2: "127.0.0.2:7070", c3: "127.0.0.3:7070" } }\n',
  );
  const a = await apiAccess({ config: file });
  assert.equal(a.base, 'http://127.0.0.1:7070');
  assert.deepEqual(a.others, ['http://127.0.0.2:7070', 'http://127.0.0.3:7070']);
  assert.deepEqual((await apiAccess({ config: file, api: 'http://127.0.0.2:7070' })).others, []);
});
