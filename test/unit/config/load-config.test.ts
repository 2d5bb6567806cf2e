import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadConfig, formatProblems } from '../../../src/config/load-config.ts';
import { ConfigError } from '../../../src/config/problems.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { MINIMAL, cleanup, lines, load, problemsOf, writeYaml } from './helpers.ts';

after(cleanup);

test('defaults: every optional field gets its documented default', () => {
  const file = writeYaml(MINIMAL);
  const base = path.dirname(file);
  const c = loadConfig(file, { baseDir: base });
  assert.equal(c.file, path.resolve(file));
  assert.equal(c.baseDir, base);
  assert.deepEqual(c.controller, {
    listen: { host: '127.0.0.1', port: 7070 },
    token: null,
    stateDir: path.join(base, '.understudy/state'),
    etcd: null,
    members: {},
    eventsKeep: 20_000,
    failover: { cooldownMs: 10_000, flapWindowMs: 300_000, flapBackoffMs: 10_000, drainTimeoutMs: 1000 },
  });
  assert.deepEqual(c.director, { listen: { host: '127.0.0.1', port: 7071 }, members: {}, holdMaxRequests: 1000, holdTimeoutMs: 5000 });
  assert.deepEqual(c.storage['array-a'], { name: 'array-a', path: path.join(base, 'data/array-a'), listen: { host: '127.0.0.1', port: 7100 }, backup: false });
  assert.deepEqual(c.storage['array-b']?.listen, { host: '127.0.0.1', port: 7101 });
  assert.deepEqual(c.storage.vault?.listen, { host: '127.0.0.1', port: 7102 });
  assert.equal(c.storage.vault?.backup, true);
  assert.deepEqual(c.hosts.h1, {
    name: 'h1',
    address: '127.0.1.1',
    storage: 'array-a',
    power: 'local',
    profile: { cpus: 1, memoryMb: 1024 },
    agentPort: 7001,
    boot: true,
  });
  assert.equal(c.hosts.h2?.boot, true, 'first standby boots (warm standby)');
  assert.equal(c.hosts.h3?.boot, false, 'other hosts stay off');
  assert.deepEqual(c.pools, {});
  const s = c.sites.shop!;
  assert.deepEqual(s.front, { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(s.app, { command: ['node', 'server.js'], port: 3000, env: {}, startTimeoutMs: 30_000 });
  assert.equal(s.primary, 'h1');
  assert.deepEqual(s.standby, ['h2']);
  assert.equal(s.standbyPool, undefined);
  assert.deepEqual(s.volume, { replication: 'async', readonly: [] });
  assert.deepEqual(s.transform, []);
  assert.deepEqual(s.health, {
    probe: { type: 'http', path: '/healthz', everyMs: 200, timeoutMs: 500, fall: 2, rise: 2 },
    malfunction: { errorRate: 0.2, windowMs: 5000 },
    performance: { p95Ms: 300, windowMs: 10_000 },
  });
  assert.deepEqual(s.scale, { max: 1, cooldownMs: 30_000, stabilizationMs: 30_000 });
});

test("defaults: baseDir is the file's own directory, whatever the working directory; seed, state and storage paths resolve against it", () => {
  const text = MINIMAL.replace('port: 3000 }', 'port: 3000, seed: shop/seed }');
  const file = writeYaml(text);
  const dir = path.dirname(file);
  assert.notEqual(dir, process.cwd());
  const c = loadConfig(file);
  assert.equal(c.baseDir, dir);
  assert.equal(c.sites.shop?.app.seed, path.join(dir, 'shop/seed'));
  assert.equal(c.storage['array-a']?.path, path.join(dir, 'data/array-a'));
  assert.equal(c.controller.stateDir, path.join(dir, '.understudy/state'));
  // Given relatively, the same: against the file's directory, not the working directory.
  const rel = path.relative(process.cwd(), file);
  assert.equal(loadConfig(rel).controller.stateDir, path.join(dir, '.understudy/state'));
});

test('full shape: every field given is compiled (durations in ms, pools expanded, literals kept)', () => {
  const c = load(`controller: { listen: 127.0.0.1:9070, state: /var/lib/us }
director: { listen: "[::1]:9071", hold: { maxRequests: 10, timeout: 1.5s } }
storage:
  a: { path: /srv/a, listen: 127.0.0.1:9100 }
  b: { path: /srv/b }
  v: { path: /srv/v, backup: true }
hosts:
  h1: { address: 127.0.1.1, storage: a, power: local, profile: { cpus: 4, memoryMb: 8192, disk: ssd }, agentPort: 7002, boot: false }
  h2: { address: 127.0.2.1, storage: b }
  h3: { address: 127.0.3.1, storage: b }
pools:
  spares: [h1, h2, h3]
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, s.js], port: 3000, env: { A: x, B: 2, C: true } }
    primary: h1
    standby: spares
    volume:
      replication: sync
      readonly: [catalog.db, public/]
      backup: { to: v }
    transform:
      - file: config/site.json
        set: { listen.host: "{{host.address}}", workers: 2, debug: false, tag: null }
    health:
      probe: { path: /up, every: 1s, timeout: 2s, fall: 3, rise: 4 }
      malfunction: { errorRate: 0.5, window: 1m }
      performance: { p95: 1s, window: 2m }
    scale: { max: 3, cooldown: 1m30s }
`);
  assert.deepEqual(c.controller, {
    listen: { host: '127.0.0.1', port: 9070 },
    token: null,
    stateDir: '/var/lib/us',
    etcd: null,
    members: {},
    eventsKeep: 20_000,
    failover: { cooldownMs: 10_000, flapWindowMs: 300_000, flapBackoffMs: 10_000, drainTimeoutMs: 1000 },
  });
  assert.deepEqual(c.director, { listen: { host: '::1', port: 9071 }, members: {}, holdMaxRequests: 10, holdTimeoutMs: 1500 });
  assert.deepEqual(c.storage.a?.listen, { host: '127.0.0.1', port: 9100 });
  assert.deepEqual(c.storage.b?.listen, { host: '127.0.0.1', port: 7101 }, 'default port counts position in file order');
  assert.deepEqual(c.hosts.h1?.profile, { cpus: 4, memoryMb: 8192, disk: 'ssd' });
  assert.equal(c.hosts.h1?.agentPort, 7002);
  assert.equal(c.hosts.h1?.boot, false, 'an explicit boot wins');
  assert.equal(c.hosts.h2?.boot, true, 'first standby of the pool (the primary is left out)');
  assert.equal(c.hosts.h3?.boot, false);
  const s = c.sites.shop!;
  assert.deepEqual(s.standby, ['h2', 'h3'], 'pool expanded, primary left out');
  assert.equal(s.standbyPool, 'spares');
  assert.deepEqual(s.app.env, { A: 'x', B: '2', C: 'true' });
  assert.deepEqual(s.volume, {
    replication: 'sync',
    readonly: ['catalog.db', 'public/'],
    backup: { to: 'v', everyMs: 30_000, keep: 20 },
    sync: { onReplicaLost: 'degrade', timeoutMs: 2000 },
  });
  assert.deepEqual(s.transform, [{ file: 'config/site.json', set: { 'listen.host': '{{host.address}}' }, values: { workers: 2, debug: false, tag: null } }]);
  assert.deepEqual(s.health, {
    probe: { type: 'http', path: '/up', everyMs: 1000, timeoutMs: 2000, fall: 3, rise: 4 },
    malfunction: { errorRate: 0.5, windowMs: 60_000 },
    performance: { p95Ms: 1000, windowMs: 120_000 },
  });
  assert.deepEqual(s.scale, { max: 3, cooldownMs: 90_000, stabilizationMs: 30_000 });
});

test('the result is frozen', () => {
  const c = load(MINIMAL);
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.sites.shop?.health.probe));
  assert.throws(() => {
    (c.hosts.h1 as { address: string }).address = 'x';
  });
});

test('standby: a list may mix hosts and pools; duplicates are dropped', () => {
  const c = load(`${MINIMAL.replace('standby: [h2]', 'standby: [h3, spares]')}pools:\n  spares: [h2, h3]\n`);
  assert.deepEqual(c.sites.shop?.standby, ['h3', 'h2']);
  assert.equal(c.sites.shop?.standbyPool, undefined);
});

test('the bundled demo config loads', () => {
  const c = loadConfig('examples/demo.yaml');
  assert.deepEqual(Object.keys(c.sites), ['shop', 'outlet']);
  assert.deepEqual(Object.keys(c.hosts), ['h1', 'h2', 'h3', 'h4']);
  const shop = c.sites.shop!;
  const outlet = c.sites.outlet!;
  assert.deepEqual(shop.standby, ['h3', 'h4']);
  assert.equal(shop.standbyPool, 'spares');
  assert.deepEqual(outlet.standby, ['h4', 'h3']);
  for (const s of [shop, outlet]) {
    const primary = c.hosts[s.primary]!;
    const first = c.hosts[s.standby[0]!]!;
    assert.notEqual(first.storage, primary.storage, `${s.name}: first standby holds the replica elsewhere`);
    assert.equal(s.app.seed, path.resolve('examples/shop/seed'), "relative to the demo file's directory");
    assert.deepEqual(s.app.command, ['node', 'shop/server.js']);
    assert.deepEqual(s.transform[0]?.set, {
      'listen.host': '{{host.address}}',
      'listen.port': '{{site.app.port}}',
      workers: '{{host.profile.cpus}}',
      name: '{{site.name}}',
    });
    assert.equal(s.volume.replication, 'async');
  }
  assert.equal(c.storage.vault?.backup, true);
  assert.equal(c.baseDir, path.resolve('examples'));
  assert.equal(c.controller.stateDir, path.resolve('examples/.understudy/state'));
  assert.ok(Object.values(c.hosts).every((h) => h.boot));
});

test('a missing file: US_CONFIG_NOT_FOUND naming the file and -c', () => {
  assert.throws(
    () => loadConfig('no-such-understudy.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof UnderstudyError);
      assert.equal(e.code, 'US_CONFIG_NOT_FOUND');
      assert.match(e.message, /no-such-understudy\.yaml/);
      assert.match(e.message, /-c FILE/);
      return true;
    },
  );
});

test('ConfigError: code, every problem listed, message is formatProblems', () => {
  const file = writeYaml(MINIMAL.replace('port: 3000', 'port: x').replace('front: 127.0.0.1:8080', 'front: nowhere'));
  assert.throws(
    () => loadConfig(file),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.ok(e instanceof UnderstudyError);
      assert.equal(e.code, 'US_CONFIG_INVALID');
      assert.equal(e.problems.length, 2);
      assert.equal(e.message, formatProblems(e.problems));
      assert.equal(e.problems[0]?.file, file);
      assert.match(e.message.split('\n')[0]!, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:11:12: sites\\.shop\\.front: must be an address`));
      return true;
    },
  );
});

test('positions: exact file:line:col of values, keys and missing keys', () => {
  const text = `storage:
  array-a: { path: data/a }
  array-b: { path: data/b }
hosts:
  h1: { address: 127.0.1.1, storage: array-a }
  h2: { address: 127.0.2.1, storage: array-b, agentPrt: 7001 }
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: h1
    standby: [h2]
    health:
      probe:
        every: 200
        timeout: 5
  outlet:
    front: 127.0.0.1:8081
    app: { port: 3001 }
    primary: h2
`;
  assert.deepEqual(lines(text), [
    '6:47: hosts.h2.agentPrt: unknown key (did you mean agentPort?)',
    '15:16: sites.shop.health.probe.every: must be a duration like 200ms',
    '16:18: sites.shop.health.probe.timeout: must be a duration like 200ms',
    '17:3: sites.outlet.standby: is required',
    '19:5: sites.outlet.app.command: is required',
  ]);
});

test('positions: the design example line renders as file:line:col: path: message', () => {
  const file = writeYaml(MINIMAL.replace('standby: [h2]', 'standby: [h2]\n    health:\n      probe: { every: 200 }'));
  try {
    loadConfig(file);
    assert.fail('should not load');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.message, `${file}:16:23: sites.shop.health.probe.every: must be a duration like 200ms`);
  }
});

test('positions: YAML syntax errors carry line and column', () => {
  const p = problemsOf('sites:\n  shop:\n    front: [unclosed\n');
  assert.equal(p.length, 1);
  assert.equal(p[0]?.path, '');
  assert.match(`${p[0]?.line}:${p[0]?.col}: ${p[0]?.message}`, /^\d+:\d+: YAML: .*\]/);
  const dup = problemsOf('storage: {}\nstorage: {}\n');
  assert.deepEqual(
    dup.map((x) => `${x.line}:${x.col}`),
    ['2:1'],
  );
  assert.match(dup[0]!.message, /unique/);
  const tab = problemsOf('storage:\n\ta: 1\n');
  assert.equal(tab[0]?.line, 2);
});

test('empty file and wrong top level', () => {
  assert.match(lines('')[0]!, /empty/);
  assert.match(lines('- a\n- b\n')[0]!, /^1:1: : the file must be a YAML map/);
  assert.deepEqual(lines(`${MINIMAL}sitez: {}\n`), ['15:1: sitez: unknown key (did you mean sites?)']);
});

test('value checks: types, ranges and names', () => {
  const text = `controller: { listen: 7070 }
storage:
  a: { path: "" }
  b: { path: data/b, backup: yes }
hosts:
  "h 1": { address: 127.0.1.1, storage: a }
  h2: { address: localhost, storage: b, power: ipmi, profile: { cpus: 1.5 }, agentPort: 99999 }
  h3: { address: 127.0.3.1, storage: b }
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: node server.js, port: 0, env: { A: [1] } }
    primary: h2
    standby: h3
    volume: { replication: semi, readonly: [/etc/passwd] }
    transform:
      - { file: config/site.json, set: { "a..b": x, ok: "{{host.address" } }
    health: { malfunction: { errorRate: 2 } }
    scale: { max: 0, cooldown: 10 }
`;
  assert.deepEqual(lines(text), [
    '1:23: controller.listen: must be an address like 127.0.0.1:8080 (IPv4, or [::1]:8080)',
    '3:14: storage.a.path: must be a non-empty string',
    '4:30: storage.b.backup: must be true or false',
    '6:3: hosts.h 1: bad name: names may use letters, digits, - and _, and must start with a letter or digit',
    '7:18: hosts.h2.address: must be an IP address like 127.0.1.1',
    '7:48: hosts.h2.power: must be local, or { ipmi: { address, user, passwordFile } }',
    '7:71: hosts.h2.profile.cpus: must be a whole number of at least 1',
    '7:89: hosts.h2.agentPort: must be a port number (1-65535)',
    '12:21: sites.shop.app.command: must be a list like [node, server.js]',
    '12:43: sites.shop.app.port: must be a port number (1-65535)',
    '12:56: sites.shop.app.env.A: must be a string, number or boolean',
    '15:28: sites.shop.volume.replication: must be sync or async',
    '15:45: sites.shop.volume.readonly[0]: must be a path inside the volume (relative, without ..)',
    '17:42: sites.shop.transform[0].set.a..b: bad key: must be a dotted key like listen.host',
    '17:57: sites.shop.transform[0].set.ok: template "{{host.address" has an unbalanced {{ or }}',
    '18:41: sites.shop.health.malfunction.errorRate: must be a fraction between 0 and 1, like 0.2',
    '19:19: sites.shop.scale.max: must be a whole number of at least 1',
    '19:32: sites.shop.scale.cooldown: must be a duration like 200ms',
  ]);
});
