import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

after(cleanup);

test('controller.state: a directory is the embedded store (no etcd, no members)', () => {
  const c = load(`controller: { state: var/state }\n${MINIMAL}`);
  assert.equal(path.basename(c.controller.stateDir), 'state');
  assert.equal(c.controller.etcd, null);
  assert.deepEqual(c.controller.members, {});
});

test('controller.state.etcd: endpoints, prefix and ttl; loop and retry derived from ttl by Patroni’s rule unless given', () => {
  const c = load(`controller:
  listen: 127.0.0.1:7070
  state: { etcd: { endpoints: [http://127.0.0.1:2379, "http://127.0.0.2:2379/"] } }
${MINIMAL}`);
  assert.deepEqual(c.controller.etcd, {
    endpoints: ['http://127.0.0.1:2379', 'http://127.0.0.2:2379'],
    prefix: '/understudy',
    ttlMs: 10_000,
    loopMs: 1000,
    retryMs: 3000,
  });
  assert.equal(path.basename(c.controller.stateDir), 'state', 'local files (logs) still have a directory');
  const short = load(`controller: { state: { etcd: { endpoints: [http://127.0.0.1:2379], prefix: /shops/eu, ttl: 2s }, dir: local } }\n${MINIMAL}`);
  assert.deepEqual(short.controller.etcd, { endpoints: ['http://127.0.0.1:2379'], prefix: '/shops/eu', ttlMs: 2000, loopMs: 500, retryMs: 700 });
  assert.equal(path.basename(short.controller.stateDir), 'local');
});

test('controller.state.etcd: timings that break loop + 2 × retry ≤ ttl, bad URLs and prefixes are refused at their place', () => {
  assert.deepEqual(
    lines(`controller:
  state: { etcd: { endpoints: [http://127.0.0.1:2379], ttl: 3s, loop: 1s, retry: 2s } }
${MINIMAL}`),
    ['2:18: controller.state.etcd: loop (1000 ms) + 2 × retry (2000 ms) must not exceed ttl (3000 ms): a leader would lose its key before it could renew it'],
  );
  assert.deepEqual(
    lines(`controller:
  state: { etcd: { endpoints: [ftp://x, http://127.0.0.1:2379/v3], prefix: understudy/, ttl: 2500ms } }
${MINIMAL}`),
    [
      '2:32: controller.state.etcd.endpoints[0]: must be an etcd client URL like http://10.0.0.5:2379',
      '2:41: controller.state.etcd.endpoints[1]: must be an etcd client URL like http://10.0.0.5:2379',
      '2:76: controller.state.etcd.prefix: must be a key prefix like /understudy (starts with /, no trailing /)',
    ],
  );
  assert.deepEqual(lines(`controller: { state: { etcd: { endpoints: [http://127.0.0.1:2379], ttl: 2500ms } } }\n${MINIMAL}`), [
    '1:30: controller.state.etcd: ttl must be whole seconds, at least 2 s (etcd leases are in seconds): 2500 ms',
  ]);
  assert.deepEqual(lines(`controller: { state: { etcd: { endpoints: [] } } }\n${MINIMAL}`), [
    '1:43: controller.state.etcd.endpoints: must name at least one etcd member',
  ]);
});

test('controller.members: needs the state in etcd; each member an address; a member may be controller.listen itself', () => {
  assert.deepEqual(lines(`controller: { members: { c1: 127.0.0.1:7070 } }\n${MINIMAL}`), [
    '1:24: controller.members: needs controller.state: { etcd: { endpoints: [...] } }: several controllers share their state only through etcd',
  ]);
  const twoControllers = `controller:
  listen: 127.0.0.1:7070
  state: { etcd: { endpoints: [http://127.0.0.1:2379] } }
  members: { c1: 127.0.0.1:7070, c2: 127.0.0.1:7072 }
`;
  // Every host needs a BMC: the next leader must be able to fence any of them.
  const local =
    "local (the default) runs the host's processes from the leading controller's own machine; another controller (c1, c2) could neither fence nor start them: with several controllers every host needs a BMC (power: { ipmi: { address, user, passwordFile } })";
  assert.deepEqual(lines(twoControllers + MINIMAL), [`10:3: hosts.h1.power: ${local}`, `11:3: hosts.h2.power: ${local}`, `12:3: hosts.h3.power: ${local}`]);
  const bmc = (n: number): string => `power: { ipmi: { address: 10.0.9.${n}, user: admin, passwordFile: bmc-password } }`;
  const withBmcs = MINIMAL.replace(/(h(\d): \{ address: [^,]+, storage: [^ ]+) \}/g, (_m, head: string, n: string) => `${head}, ${bmc(Number(n))} }`);
  assert.notEqual(withBmcs, MINIMAL);
  assert.deepEqual(
    lines(
      twoControllers + withBmcs.replace('h3: { address: 127.0.3.1, storage: array-b, ' + bmc(3), 'h3: { address: 127.0.3.1, storage: array-b, power: local'),
    ),
    [`12:54: hosts.h3.power: ${local}`],
  );
  const c = load(twoControllers + withBmcs);
  assert.deepEqual(c.controller.members, { c1: { host: '127.0.0.1', port: 7070 }, c2: { host: '127.0.0.1', port: 7072 } });
  assert.deepEqual(
    lines(`controller:
  state: { etcd: { endpoints: [http://127.0.0.1:2379] } }
  members: { c1: 127.0.0.1:7071 }
director: { listen: 127.0.0.1:7071 }
${MINIMAL}`),
    ['4:21: director.listen: 127.0.0.1:7071 is already used by controller.members.c1'],
  );
});
