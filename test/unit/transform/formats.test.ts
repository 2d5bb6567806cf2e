import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { HostConfig, SiteConfig, TransformRule } from '../../../src/config/types.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { applyTransform, formatTransformDiff, renderedRuleSchema, renderRules } from '../../../src/transform/index.ts';
import type { RenderedRule } from '../../../src/transform/index.ts';
import { formatFor } from '../../../src/transform/formats/index.ts';

const base = { storage: 'a', power: 'local' as const, agentPort: 7001, boot: true };
const h1: HostConfig = {
  ...base,
  name: 'h1',
  address: '127.0.1.1',
  profile: { cpus: 2, memoryMb: 2048, user: 'shop', paths: { logs: '/var/log/shop', cache: '/tmp/shop-cache' } },
};
const h2: HostConfig = {
  ...base,
  name: 'h2',
  address: '127.0.2.1',
  profile: { cpus: 1, memoryMb: 1024, user: 'www-data', paths: { logs: '/srv/logs/shop dir', cache: '/var/cache/shop' } },
};
const site: SiteConfig = {
  name: 'shop',
  front: { host: '127.0.0.1', port: 8080 },
  app: { command: ['node', 'server.js'], port: 3000, env: {} },
  primary: 'h1',
  standby: ['h2'],
  priority: 0,
  volume: { replication: 'async', readonly: [] },
  transform: [],
  health: {
    probe: { path: '/healthz', everyMs: 200, timeoutMs: 500, fall: 2, rise: 2 },
    malfunction: { errorRate: 0.2, windowMs: 5000 },
    performance: { p95Ms: 300, windowMs: 10_000 },
  },
  scale: { max: 1, cooldownMs: 30_000 },
};

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-formats-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function volume(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'v-'));
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

const read = (dir: string, f: string): string => fs.readFileSync(path.join(dir, f), 'utf8');
const forHost = (rules: TransformRule[], host: HostConfig): RenderedRule[] => renderRules(rules, { host, site });

/**
 * Each case: a file as host h1 had it (comments, odd spacing), rules, and the file
 * as it must read for h2 — only the values differ, every other byte is the same.
 */
const cases: { name: string; file: string; h1: string; h2: string; rules: TransformRule[] }[] = [
  {
    name: 'json',
    file: 'config/site.json',
    h1: '{\n    "listen": {\n        "host": "127.0.1.1",\n        "port": 3000\n    },\n    "workers": 2,\n    "cacheMb": 512,\n    "logs": "/var/log/shop"\n}\n',
    h2: '{\n    "listen": {\n        "host": "127.0.2.1",\n        "port": 3000\n    },\n    "workers": 1,\n    "cacheMb": 256,\n    "logs": "/srv/logs/shop dir"\n}\n',
    rules: [
      {
        file: 'config/site.json',
        set: {
          'listen.host': '{{host.address}}',
          workers: '{{host.profile.cpus}}',
          cacheMb: '{{host.profile.memoryMb * 0.25}}',
          logs: '{{host.profile.paths.logs}}',
        },
      },
    ],
  },
  {
    name: 'yaml',
    file: 'config/app.yaml',
    h1: [
      '# The shop, as deployed',
      'listen:',
      '  host: 127.0.1.1     # set by understudy',
      '  port: 3000',
      'workers:   2',
      'tags: [a, b]          # flow style kept',
      'logs: "/var/log/shop"',
      "user: 'shop'",
      'jvm: -Xmx1024m',
      '',
      '# trailing comment',
      '',
    ].join('\n'),
    h2: [
      '# The shop, as deployed',
      'listen:',
      '  host: 127.0.2.1     # set by understudy',
      '  port: 3000',
      'workers:   1',
      'tags: [a, b]          # flow style kept',
      'logs: "/srv/logs/shop dir"',
      "user: 'www-data'",
      'jvm: -Xmx512m',
      '',
      '# trailing comment',
      '',
    ].join('\n'),
    rules: [
      {
        file: 'config/app.yaml',
        set: {
          'listen.host': '{{host.address}}',
          workers: '{{host.profile.cpus}}',
          logs: '{{host.profile.paths.logs}}',
          user: '{{host.profile.user}}',
          jvm: '-Xmx{{host.profile.memoryMb / 2}}m',
        },
      },
    ],
  },
  {
    name: 'ini',
    file: 'conf/php.ini',
    h1: '; PHP settings\r\nuser = shop\r\n\r\n[server]\r\nhost=127.0.1.1   ; inline comment kept\r\nport = 3000\r\nworkers = 2\r\n\r\n# paths\r\n[paths]\r\nlogs = /var/log/shop\r\ncache = "/tmp/shop-cache"\r\n',
    h2: '; PHP settings\r\nuser = www-data\r\n\r\n[server]\r\nhost=127.0.2.1   ; inline comment kept\r\nport = 3000\r\nworkers = 1\r\n\r\n# paths\r\n[paths]\r\nlogs = /srv/logs/shop dir\r\ncache = "/var/cache/shop"\r\n',
    rules: [
      {
        file: 'conf/php.ini',
        set: {
          user: '{{host.profile.user}}',
          'server.host': '{{host.address}}',
          'server.workers': '{{host.profile.cpus}}',
          'paths.logs': '{{host.profile.paths.logs}}',
          'paths.cache': '{{host.profile.paths.cache}}',
        },
      },
    ],
  },
  {
    name: 'env',
    file: '.env',
    h1: '# shop environment\nexport HOST=127.0.1.1 # the listen address\nWORKERS=2\nLOG_DIR="/var/log/shop"\nRUN_AS="shop"\n\nDEBUG=false\n',
    h2: '# shop environment\nexport HOST=127.0.2.1 # the listen address\nWORKERS=1\nLOG_DIR="/srv/logs/shop dir"\nRUN_AS="www-data"\n\nDEBUG=false\n',
    rules: [
      {
        file: '.env',
        set: { HOST: '{{host.address}}', WORKERS: '{{host.profile.cpus}}', LOG_DIR: '{{host.profile.paths.logs}}', RUN_AS: '{{host.profile.user}}' },
      },
    ],
  },
  {
    name: 'text',
    file: 'conf/nginx.conf',
    h1: '# nginx\nserver {\n    listen 127.0.1.1:80;   # front\n    worker_processes 2;\n    access_log /var/log/shop/access.log;\n}\n',
    h2: '# nginx\nserver {\n    listen 127.0.2.1:80;   # front\n    worker_processes 1;\n    access_log /srv/logs/shop dir/access.log;\n}\n',
    rules: [
      {
        file: 'conf/nginx.conf',
        set: {},
        replace: [
          { match: '(?<=listen )[^:]+(?=:80;)', with: '{{host.address}}' },
          { match: '^(\\s*)worker_processes \\d+;', with: '    worker_processes {{host.profile.cpus}};' },
          { match: '(?<=access_log ).*(?=/access\\.log;)', with: '{{host.profile.paths.logs}}' },
        ],
      },
    ],
  },
];

for (const c of cases) {
  test(`${c.name}: h1 → h2 changes only the values; → h1 gives back the file byte for byte; idempotent`, () => {
    const dir = volume({ [c.file]: c.h1 });
    assert.deepEqual(applyTransform(dir, forHost(c.rules, h1)), [], 'the file already fits h1');
    const toH2 = applyTransform(dir, forHost(c.rules, h2));
    assert.ok(toH2.length > 0);
    assert.equal(read(dir, c.file), c.h2, 'only the values changed; comments, order and spacing kept');
    assert.deepEqual(applyTransform(dir, forHost(c.rules, h2)), [], 'a second run changes nothing');
    const back = applyTransform(dir, forHost(c.rules, h1));
    assert.equal(read(dir, c.file), c.h1, 'reversed exactly');
    assert.deepEqual(
      back.map((x) => [x.key, x.from, x.to]),
      toH2.map((x) => [x.key, x.to, x.from]),
      'the reverse changes mirror the forward ones',
    );
    assert.deepEqual(
      fs.readdirSync(path.dirname(path.join(dir, c.file))).filter((f) => f.endsWith('.tmp')),
      [],
      'no temp file left behind',
    );
  });
}

test('keys that are missing are added; h1 → h2 → h1 is byte-identical to after the first h1, for every format', () => {
  const files: Record<string, string> = {
    'a.json': '{"name":"shop"}',
    'a.yaml': '# comment\nname: shop  # kept\n',
    'a.ini': '; top\n[server]\nname = shop\n',
    'a.env': '# top\nNAME=shop',
    'a.txt': 'workers: 0\n',
  };
  const rules: TransformRule[] = [
    { file: 'a.json', set: { 'limits.memoryMb': '{{host.profile.memoryMb}}', user: '{{host.profile.user}}' } },
    { file: 'a.yaml', set: { 'limits.memoryMb': '{{host.profile.memoryMb}}', user: '{{host.profile.user}}' } },
    { file: 'a.ini', set: { 'limits.memoryMb': '{{host.profile.memoryMb}}', 'server.user': '{{host.profile.user}}', top: '{{host.profile.cpus}}' } },
    { file: 'a.env', set: { MEMORY_MB: '{{host.profile.memoryMb}}', USER: '{{host.profile.user}}' } },
    { file: 'a.txt', set: {}, replace: [{ match: '(?<=workers: )\\d+', with: '{{max(1, host.profile.cpus - 1)}}' }] },
  ];
  const dir = volume(files);
  applyTransform(dir, forHost(rules, h1));
  const afterH1 = Object.fromEntries(Object.keys(files).map((f) => [f, read(dir, f)]));
  assert.equal(afterH1['a.json'], '{"name":"shop","limits":{"memoryMb":2048},"user":"shop"}', 'one-line JSON stays one line');
  assert.match(afterH1['a.yaml'] ?? '', /^# comment\nname: shop #/);
  assert.match(afterH1['a.yaml'] ?? '', /limits:\n {2}memoryMb: 2048\nuser: shop\n$/);
  assert.equal(afterH1['a.ini'], 'top = 2\n; top\n[server]\nname = shop\nuser = shop\n\n[limits]\nmemoryMb = 2048\n');
  assert.equal(afterH1['a.env'], '# top\nNAME=shop\nMEMORY_MB=2048\nUSER=shop\n');
  assert.equal(afterH1['a.txt'], 'workers: 1\n');
  applyTransform(dir, forHost(rules, h2));
  assert.equal(read(dir, 'a.env'), '# top\nNAME=shop\nMEMORY_MB=1024\nUSER=www-data\n');
  assert.equal(read(dir, 'a.txt'), 'workers: 1\n', 'max(1, 1 - 1) is 1');
  applyTransform(dir, forHost(rules, h1));
  for (const f of Object.keys(files)) assert.equal(read(dir, f), afterH1[f], `${f} is as after the first h1 transform`);
  assert.deepEqual(applyTransform(dir, forHost(rules, h1)), []);
});

test('YAML: types are kept; a string that would read as another type is quoted; nested maps created', () => {
  const dir = volume({ 'c.yml': 'port: "3000"\nflag: yes\nname: plain\n' });
  const changes = applyTransform(dir, [{ file: 'c.yml', set: { port: 3001, name: 'true', 'a.b.c': 'x: y', flag: false } }]);
  assert.deepEqual(
    changes.map((c) => [c.key, c.from, c.to]),
    [
      ['port', '3000', 3001],
      ['name', 'plain', 'true'],
      ['a.b.c', undefined, 'x: y'],
      ['flag', 'yes', false],
    ],
  );
  assert.equal(read(dir, 'c.yml'), 'port: 3001\nflag: false\nname: "true"\na:\n  b:\n    c: "x: y"\n');
});

test('INI and .env values are text: numbers are written as digits and compare equal to them', () => {
  const dir = volume({ 's.ini': '[a]\nn = 2\n', '.env.production': 'N=2\n' });
  assert.deepEqual(
    applyTransform(dir, [
      { file: 's.ini', set: { 'a.n': 2 } },
      { file: '.env.production', set: { N: 2 } },
    ]),
    [],
  );
  assert.deepEqual(applyTransform(dir, [{ file: 's.ini', set: { 'a.n': 3 } }]), [{ file: 's.ini', key: 'a.n', from: '2', to: '3' }]);
});

test('INI: a dotted section name wins over its first part; quoting when a value needs it', () => {
  const dir = volume({ 'x.cfg': '[server.http]\nport = 80\n' });
  applyTransform(dir, [{ file: 'x.cfg', set: { 'server.http.port': 8080, 'server.http.motd': ' hi ; there ', 'server.http.hash': 'a #b' } }]);
  assert.equal(read(dir, 'x.cfg'), '[server.http]\nport = 8080\nmotd = " hi ; there "\nhash = "a #b"\n');
  assert.deepEqual(
    applyTransform(dir, [{ file: 'x.cfg', set: { 'server.http.motd': ' hi ; there ', 'server.http.hash': 'a #b' } }]),
    [],
    'quoted values read back as themselves',
  );
});

test('.env: quotes only when needed; double quotes escape; a line break is kept in double quotes', () => {
  const dir = volume({ '.env': "A=1\nB='x'\n" });
  applyTransform(dir, [{ file: '.env', set: { A: 'has $HOME', B: "it's", C: 'l1\nl2', D: 'a=b,c:/d' } }]);
  assert.equal(read(dir, '.env'), 'A=\'has $HOME\'\nB="it\'s"\nC="l1\\nl2"\nD=a=b,c:/d\n');
  assert.deepEqual(applyTransform(dir, [{ file: '.env', set: { A: 'has $HOME', B: "it's", C: 'l1\nl2', D: 'a=b,c:/d' } }]), []);
});

test('.env: a bare value that needs quotes for another host keeps them when reversed (the values reverse exactly)', () => {
  const dir = volume({ '.env': 'LOG_DIR=/var/log/shop\n' });
  const rules: TransformRule[] = [{ file: '.env', set: { LOG_DIR: '{{host.profile.paths.logs}}' } }];
  applyTransform(dir, forHost(rules, h2));
  assert.equal(read(dir, '.env'), "LOG_DIR='/srv/logs/shop dir'\n");
  applyTransform(dir, forHost(rules, h1));
  assert.equal(read(dir, '.env'), "LOG_DIR='/var/log/shop'\n", 'the quotes stay: a quoted slot keeps its quotes');
  assert.deepEqual(applyTransform(dir, forHost(rules, h1)), []);
});

test('an explicit format wins over the file name; formats by name', () => {
  const dir = volume({ 'conf/app.conf': '[main]\nhost = 127.0.1.1\n' });
  applyTransform(dir, forHost([{ file: 'conf/app.conf', format: 'ini', set: { 'main.host': '{{host.address}}' } }], h2));
  assert.equal(read(dir, 'conf/app.conf'), '[main]\nhost = 127.0.2.1\n');
  const names = (f: string): string | undefined => formatFor(f)?.name;
  assert.deepEqual(['a.json', 'a.YAML', 'b.yml', 'c.ini', 'd.cfg', '.env', 'x/.env.local', 'prod.env', 'nginx.conf'].map(names), [
    'json',
    'yaml',
    'yaml',
    'ini',
    'ini',
    'env',
    'env',
    'env',
    undefined,
  ]);
});

test('replace: a pattern must match exactly once; errors name the file and the pattern; nothing is written', () => {
  const dir = volume({ 'n.conf': 'listen 1;\nlisten 2;\n', 'ok.conf': 'a 1\n' });
  const refused = (rules: RenderedRule[], re: RegExp): void => {
    assert.throws(
      () => applyTransform(dir, rules),
      (e: unknown) => e instanceof UnderstudyError && e.code === 'US_TRANSFORM_FAILED' && re.test(e.message),
    );
  };
  const ok = { file: 'ok.conf', set: {}, replace: [{ match: 'a \\d', with: 'a 2' }] };
  refused(
    [ok, { file: 'n.conf', set: {}, replace: [{ match: 'listen \\d;', with: 'x' }] }],
    /^transform file n\.conf: pattern \/listen \\d;\/ matches 2 times; it must match exactly once/,
  );
  refused([ok, { file: 'n.conf', set: {}, replace: [{ match: 'nope', with: 'x' }] }], /transform file n\.conf: pattern \/nope\/ matches nothing/);
  refused([{ file: 'n.conf', set: {}, replace: [{ match: '(', with: 'x' }] }], /n\.conf: pattern \/\(\/: not a valid regular expression/);
  refused([{ file: 'missing.conf', set: {}, replace: [{ match: 'a', with: 'x' }] }], /missing\.conf: the file does not exist/);
  refused([{ file: 'n.conf', set: { a: 1 }, replace: [{ match: 'a', with: 'x' }] }], /either set or replace/);
  refused([{ file: 'n.conf', format: 'text', set: { a: 1 } }], /format text takes replace rules/);
  refused([{ file: 'n.conf', set: { a: 1 } }], /n\.conf: unsupported format/);
  assert.equal(read(dir, 'ok.conf'), 'a 1\n', 'nothing half-applied');
  assert.equal(read(dir, 'n.conf'), 'listen 1;\nlisten 2;\n');
  // `$` in the replacement is literal
  applyTransform(dir, [{ file: 'ok.conf', set: {}, replace: [{ match: '1', with: '$&$1' }] }]);
  assert.equal(read(dir, 'ok.conf'), 'a $&$1\n');
});

test('format errors name the file and the key', () => {
  const dir = volume({ 'd.ini': '[a]\nk = 1\nk = 2\n', 'd.env': 'K=1\nK=2\n', 'y.yaml': 'a: 1\n', 'bad.yaml': 'a: [1\n', 'multi.yaml': 'a: 1\n---\nb: 2\n' });
  const refused = (rules: RenderedRule[], re: RegExp): void => {
    assert.throws(
      () => applyTransform(dir, rules),
      (e: unknown) => e instanceof UnderstudyError && re.test(e.message) && (e.details as { file: string }).file === rules[0]?.file,
    );
  };
  refused([{ file: 'd.ini', set: { 'a.k': 3 } }], /d\.ini: key a\.k appears 2 times in \[a\]/);
  refused([{ file: 'd.env', set: { K: 3 } }], /d\.env: key K appears 2 times/);
  refused([{ file: 'd.ini', set: { 'a.x': 'l1\nl2' } }], /line break/);
  refused([{ file: 'd.ini', set: { 'a.x': { o: 1 } } }], /INI values are text/);
  refused([{ file: 'y.yaml', set: { 'a.b': 1 } }], /y\.yaml: cannot set "a\.b": "a" is 1, not a map/);
  refused([{ file: 'bad.yaml', set: { a: 1 } }], /bad\.yaml: not valid yaml/);
  refused([{ file: 'multi.yaml', set: { a: 1 } }], /multi\.yaml: not valid yaml \(it holds 2 documents/);
  refused([{ file: 'd.env', set: { 'BAD NAME': 1 } }], /not a variable name/);
});

test('formatTransformDiff: one compact line per change', () => {
  assert.equal(
    formatTransformDiff([
      { file: 'config/site.json', key: 'listen.host', from: '127.0.1.1', to: '127.0.3.1' },
      { file: 'config/site.json', key: 'limits.memoryMb', from: undefined, to: 2048 },
      { file: '.env', key: 'LOG_DIR', from: '/var/log', to: '/srv/a b' },
      { file: 'a.yaml', key: 'x', from: { a: 1 }, to: '' },
    ]),
    [
      'config/site.json: listen.host 127.0.1.1 → 127.0.3.1',
      'config/site.json: limits.memoryMb (absent) → 2048',
      '.env: LOG_DIR /var/log → "/srv/a b"',
      'a.yaml: x {"a":1} → ""',
    ].join('\n'),
  );
  assert.equal(formatTransformDiff([]), '');
  assert.match(formatTransformDiff([{ file: 'f', key: 'k', from: 'x'.repeat(500), to: 1 }]), /^f: k x{119}… → 1$/);
});

test('renderedRuleSchema: what the storage processor should parse (format and replace travel; set defaults to {})', () => {
  const rules = forHost(cases.find((c) => c.name === 'text')!.rules, h2);
  const wire = JSON.parse(JSON.stringify(rules)) as unknown[];
  assert.deepEqual(
    wire.map((r) => renderedRuleSchema.parse(r)),
    rules,
  );
  assert.deepEqual(renderedRuleSchema.parse({ file: 'a', replace: [{ match: 'x', with: 'y' }] }), { file: 'a', set: {}, replace: [{ match: 'x', with: 'y' }] });
  assert.throws(() => renderedRuleSchema.parse({ file: 'a', set: {}, format: 'toml' }));
});
