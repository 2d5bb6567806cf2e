import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load, writeYaml } from './helpers.ts';
import { loadConfig } from '../../../src/config/load-config.ts';

after(cleanup);

const BEYOND = MINIMAL.replace('h1: { address: 127.0.1.1, storage: array-a }', 'h1: { address: 10.0.1.11, storage: array-a }');

test('cluster: absent on loopback (the embedded default): no secret, no TLS, no token', () => {
  const c = load(MINIMAL);
  assert.deepEqual(c.cluster, { secret: null, tls: null });
  assert.equal(c.controller.token, null);
});

test('cluster: secret and tls compile to absolute paths; {{part}} is kept for each part to fill in', () => {
  const file = writeYaml(
    `controller: { token: { env: SHOP_API_TOKEN } }\ncluster:\n  secret: { file: secrets/cluster }\n  tls: { ca: certs/ca.pem, cert: "certs/{{part}}.pem", key: "certs/{{part}}-key.pem" }\n${BEYOND}`,
  );
  const base = path.dirname(file);
  const c = loadConfig(file, { baseDir: base });
  assert.deepEqual(c.cluster, {
    secret: { file: path.join(base, 'secrets/cluster') },
    tls: { ca: path.join(base, 'certs/ca.pem'), cert: path.join(base, 'certs/{{part}}.pem'), key: path.join(base, 'certs/{{part}}-key.pem') },
  });
  assert.deepEqual(c.controller.token, { env: 'SHOP_API_TOKEN' });
});

test('cluster: parts beyond loopback without a secret are refused, naming them and what to set', () => {
  const [problem, ...rest] = lines(BEYOND);
  assert.deepEqual(rest, []);
  assert.match(problem!, /parts listen beyond loopback \(hosts\.h1\.address 10\.0\.1\.11\) but cluster\.secret is not set/);
  assert.match(problem!, /cluster: \{ secret: \{ file: PATH \} \}/);
  const more = lines(`controller: { listen: 10.0.0.5:7070 }\ndirector: { listen: 10.0.0.5:7071 }\n${BEYOND}`);
  assert.match(more[0]!, /controller\.listen 10\.0\.0\.5, director\.listen 10\.0\.0\.5, hosts\.h1\.address 10\.0\.1\.11\)/);
});

test('cluster: a secret written in the config, tls without a secret, and unknown keys are refused at their place', () => {
  assert.deepEqual(lines(`cluster: { secret: hunter2hunter2hunter2 }\n${MINIMAL}`), [
    '1:20: cluster.secret: must be { env: NAME } or { file: PATH } (a secret is never written in the config itself)',
  ]);
  assert.deepEqual(
    lines(`cluster: { tls: { ca: a, cert: b, key: c } }\n${MINIMAL}`).map((l) => l.replace(/^\d+:\d+: /, '')),
    ['cluster.secret: is required with tls: TLS proves who serves, the cluster secret proves who calls'],
  );
  assert.deepEqual(
    lines(`cluster: { secret: { file: s }, tls: { ca: a, cert: b } }\n${MINIMAL}`).map((l) => l.replace(/^\d+:\d+: /, '').replace(/:.*/, '')),
    ['cluster.tls.key'],
  );
  assert.deepEqual(
    lines(`cluster: { secrets: { file: s } }\n${MINIMAL}`).map((l) => l.replace(/^\d+:\d+: /, '')),
    ['cluster.secrets: unknown key (did you mean secret?)'],
  );
});
