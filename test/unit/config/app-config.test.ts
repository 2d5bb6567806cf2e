import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { startRequest } from '../../../src/controller/site-facts.ts';
import { readerStartRequest } from '../../../src/controller/reader-facts.ts';
import { buildStatus } from '../../../src/controller/status-view.ts';
import { formatStatus } from '../../../src/cli/format.ts';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

after(cleanup);

const withApp = (app: string): string => MINIMAL.replace('    app: { command: [node, server.js], port: 3000 }\n', app);
const withHosts = (hosts: string): string => MINIMAL.replace(/hosts:\n(?: {2}.*\n)+/, `hosts:\n${hosts}`);

test('app.command and app.env: templates rendered per host; UNDERSTUDY_ADDRESS and UNDERSTUDY_PORT always set', () => {
  const c = load(
    withApp(`    app:
      command: [node, app.mjs, --listen, "{{host.address}}:{{site.app.port}}", --workers, "{{max(1, host.profile.cpus - 1)}}"]
      port: 3000
      env: { HOST: "{{host.address}}", PORT: "{{site.app.port}}", NAME: "{{site.name}}-{{host.name}}", PLAIN: 7, UNDERSTUDY_PORT: "9", APP_DATA: "{{volume.path}}/data" }
`),
  );
  const site = c.sites.shop!;
  // Compiled as written: rendering is per host.
  assert.deepEqual(site.app.command, ['node', 'app.mjs', '--listen', '{{host.address}}:{{site.app.port}}', '--workers', '{{max(1, host.profile.cpus - 1)}}']);
  assert.equal(site.app.startTimeoutMs, 30_000);
  for (const [h, addr] of [
    ['h1', '127.0.1.1'],
    ['h2', '127.0.2.1'],
  ] as const) {
    const req = startRequest(c, c.hosts[h]!, site, 3);
    assert.deepEqual(req.command, [process.execPath, 'app.mjs', '--listen', `${addr}:3000`, '--workers', '1']);
    assert.equal(req.env.HOST, addr);
    assert.equal(req.env.PORT, '3000');
    assert.equal(req.env.NAME, `shop-${h}`);
    assert.equal(req.env.PLAIN, '7');
    assert.equal(req.env.APP_DATA, `${req.dataDir}/data`, "{{volume.path}} is the app's data directory on that host");
    assert.equal(req.dataDir, path.join(c.storage[c.hosts[h]!.storage]!.path, 'volumes', 'shop'));
    assert.equal(req.env.UNDERSTUDY_ADDRESS, addr);
    assert.equal(req.env.UNDERSTUDY_PORT, '3000', 'the address Understudy gives wins over a configured value');
    assert.equal(req.env.UNDERSTUDY_HOST, h);
    assert.equal(req.env.UNDERSTUDY_SITE, 'shop');
    assert.deepEqual(req.listen, { address: addr, port: 3000 });
    assert.equal(req.cwd, c.baseDir);
  }
  const reader = readerStartRequest(c, c.hosts.h2!, site, 3);
  assert.deepEqual(reader.command.slice(2, 4), ['--listen', '127.0.2.1:3000']);
  assert.equal(reader.env.UNDERSTUDY_ROLE, 'reader');
  assert.equal(reader.env.UNDERSTUDY_ADDRESS, '127.0.2.1');
  assert.equal(reader.env.APP_DATA, `${reader.dataDir}/data`, "a reader's {{volume.path}} is its reader copy");
  assert.notEqual(reader.dataDir, startRequest(c, c.hosts.h2!, site, 3).dataDir);
});

test('app.command: a command without templates is run as written', () => {
  const c = load(MINIMAL);
  assert.deepEqual(startRequest(c, c.hosts.h1!, c.sites.shop!, 1).command, [process.execPath, 'server.js']);
});

test('app templates: an unknown name, a bad expression and text in arithmetic are file:line:col errors', () => {
  assert.deepEqual(
    lines(
      withApp(`    app:
      command: [node, app.mjs, --listen, "{{host.adress}}:{{site.app.port}}"]
      port: 3000
      env: { HOST: "{{host.address", CPUS: "{{host.address * 2}}" }
`),
    ),
    [
      '13:42: sites.shop.app.command[3]: unknown placeholder {{host.adress}}; known: {{host.address}}, {{host.name}}, {{host.profile.<key>[.<key>…]}}, {{site.name}}, {{site.app.port}}, {{volume.path}}',
      '15:20: sites.shop.app.env.HOST: template "{{host.address" has an unbalanced {{ or }}',
      '15:44: sites.shop.app.env.CPUS: {{host.address * 2}}: host.address is text, arithmetic needs numbers',
    ],
  );
});

test('{{volume.path}} is known in app.command and app.env only; not in arithmetic', () => {
  assert.deepEqual(
    lines(
      withApp(`    app: { command: [node, server.js, "{{volume.path * 2}}"], port: 3000 }
    transform:
      - { file: config/site.json, set: { data: "{{volume.path}}" } }
`),
    ),
    [
      '12:39: sites.shop.app.command[2]: {{volume.path * 2}}: volume.path is text, arithmetic needs numbers',
      '14:48: sites.shop.transform[0].set.data: unknown placeholder {{volume.path}} (only in app.command and app.env); known: {{host.address}}, {{host.name}}, {{host.profile.<key>[.<key>…]}}, {{site.name}}, {{site.app.port}}',
    ],
  );
});

test('app templates: a profile value missing on a host that may run the site is found at load time', () => {
  const text = withHosts(`  h1: { address: 127.0.1.1, storage: array-a, profile: { paths: { logs: /var/log/a } } }
  h2: { address: 127.0.2.1, storage: array-b }
  h3: { address: 127.0.3.1, storage: array-b }
`).replace(
    '    app: { command: [node, server.js], port: 3000 }\n',
    '    app: { command: [node, server.js, "--logs={{host.profile.paths.logs}}"], port: 3000 }\n',
  );
  const found = lines(text);
  assert.equal(found.length, 1, found.join('\n'));
  assert.match(found[0]!, /^\d+:\d+: sites\.shop\.app\.command\[2\]: placeholder \{\{host\.profile\.paths\.logs\}\}: host h2 has no profile\.paths/);
  // h3 runs no site: its profile does not matter.
});

test("status shows the primary's rendered command (JSON and table)", () => {
  const c = load(
    withApp(`    app: { command: [node, app.mjs, --listen, "{{host.address}}:{{site.app.port}}", --title, "my shop"], port: 3000 }
`),
  );
  const st = buildStatus({
    config: c,
    sites: [{ site: 'shop', epoch: 2, primaryHost: 'h2', state: 'serving', replicaStorage: null, updatedAt: 0 }],
    relay: { status: () => ({ power: 'off', pid: null }) } as never,
    monitors: new Map(),
    volume: () => undefined,
    storageUp: () => true,
  });
  assert.deepEqual(st.sites[0]!.primary.command, [process.execPath, 'app.mjs', '--listen', '127.0.2.1:3000', '--title', 'my shop']);
  assert.match(formatStatus(st), new RegExp(`shop on h2 runs: \\S+ app\\.mjs --listen 127\\.0\\.2\\.1:3000 --title 'my shop'`));
});

const withProbe = (probe: string): string => `${MINIMAL}    health:\n      probe: ${probe}\n`;

test('health.probe: expect (codes, classes, a body pattern) and type tcp are compiled', () => {
  const http = load(withProbe('{ path: /health, expect: { status: [200, 2XX, 302], body: \'"status":\\s*"UP"\' } }')).sites.shop!.health.probe;
  assert.deepEqual(http, {
    type: 'http',
    path: '/health',
    expect: { status: ['200', '2xx', '302'], body: '"status":\\s*"UP"' },
    everyMs: 200,
    timeoutMs: 500,
    fall: 2,
    rise: 2,
  });
  const tcp = load(withProbe('{ type: tcp, every: 1s }')).sites.shop!.health.probe;
  assert.deepEqual(tcp, { type: 'tcp', path: '', everyMs: 1000, timeoutMs: 500, fall: 2, rise: 2 });
});

test('health.probe: bad expect and a tcp probe given a path are file:line:col errors', () => {
  assert.deepEqual(lines(withProbe('{ expect: { status: [200, 7xx, ok], body: "(unclosed", code: 1 } }')), [
    '16:40: sites.shop.health.probe.expect.status[1]: must be a status code like 200 or a class like 2xx',
    '16:45: sites.shop.health.probe.expect.status[2]: must be a status code like 200 or a class like 2xx',
    '16:56: sites.shop.health.probe.expect.body: not a valid regular expression (Invalid regular expression: /(unclosed/: Unterminated group)',
    '16:69: sites.shop.health.probe.expect.code: unknown key (known: status, body)',
  ]);
  assert.deepEqual(lines(withProbe('{ type: tcp, path: /healthz, expect: { status: [200] } }')), [
    '16:33: sites.shop.health.probe.path: a tcp probe only connects: it has no path (use type: http)',
    '16:51: sites.shop.health.probe.expect: a tcp probe only connects: it has no answer to expect (use type: http)',
  ]);
  assert.deepEqual(lines(withProbe('{ type: udp }')), ['16:22: sites.shop.health.probe.type: must be http or tcp']);
});
