import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

/** `hosts.X.power`: `local` (the default) or the host's BMC over IPMI. */

after(cleanup);

const withPower = (power: string) =>
  MINIMAL.replace('h1: { address: 127.0.1.1, storage: array-a }', `h1: { address: 127.0.1.1, storage: array-a, power: ${power} }`);

test('power defaults to local, and local is accepted as written', () => {
  assert.equal(load(MINIMAL).hosts.h1?.power, 'local');
  assert.equal(load(withPower('local')).hosts.h1?.power, 'local');
});

test('power.ipmi: defaults for port, cipher suite and fence timing; passwordFile resolved against the config file', () => {
  const c = load(withPower('{ ipmi: { address: 10.0.9.11, user: fence, passwordFile: secrets/h1-bmc } }'));
  const p = c.hosts.h1!.power;
  assert.notEqual(p, 'local');
  assert.deepEqual(p, {
    ipmi: {
      address: '10.0.9.11',
      port: 623,
      user: 'fence',
      passwordFile: path.join(c.baseDir, 'secrets/h1-bmc'),
      cipherSuite: 17,
      waitMs: 0,
      pollMs: 250,
      timeoutMs: 10_000,
    },
  });
  const d = load(
    withPower(
      '{ ipmi: { address: 10.0.9.11, port: 6230, user: fence, passwordFile: /etc/understudy/h1-bmc, cipherSuite: 3, wait: 1s, poll: 100ms, timeout: 20s } }',
    ),
  );
  assert.deepEqual(d.hosts.h1!.power, {
    ipmi: {
      address: '10.0.9.11',
      port: 6230,
      user: 'fence',
      passwordFile: '/etc/understudy/h1-bmc',
      cipherSuite: 3,
      waitMs: 1000,
      pollMs: 100,
      timeoutMs: 20_000,
    },
  });
  // The default written out: no power wait.
  const z = load(withPower('{ ipmi: { address: 10.0.9.11, user: fence, passwordFile: /etc/understudy/h1-bmc, wait: 0s } }'));
  assert.equal((z.hosts.h1!.power as { ipmi: { waitMs: number } }).ipmi.waitMs, 0);
});

test('a bad power setting is a file:line:col error naming the key', () => {
  const unknown = lines(withPower('redfish'));
  assert.ok(
    unknown.some((l) => /hosts\.h1\.power: must be local, or \{ ipmi: \{ address, user, passwordFile \} \}$/.test(l)),
    unknown.join('\n'),
  );
  const missing = lines(withPower('{ ipmi: { address: 10.0.9.11 } }'));
  assert.ok(
    missing.some((l) => /hosts\.h1\.power\.ipmi\.user: is required$/.test(l)),
    missing.join('\n'),
  );
  assert.ok(
    missing.some((l) => /hosts\.h1\.power\.ipmi\.passwordFile: is required$/.test(l)),
    missing.join('\n'),
  );
  for (const l of [...unknown, ...missing]) assert.match(l, /^\d+:\d+: /);
});
