import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { HostConfig, SiteConfig } from '../../../src/config/types.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { applyTransform } from '../../../src/transform/apply-transform.ts';
import { renderRules } from '../../../src/transform/render-rules.ts';
import { checkTemplate, renderTemplate } from '../../../src/transform/template.ts';
import { loadConfig } from '../../../src/config/load-config.ts';

const host: HostConfig = {
  name: 'h3',
  address: '127.0.3.1',
  storage: 'array-b',
  power: 'local',
  profile: { cpus: 4, memoryMb: 2048, disk: 'ssd' },
  agentPort: 7001,
  boot: true,
};
const site: SiteConfig = {
  name: 'shop',
  front: { host: '127.0.0.1', port: 8080 },
  app: { command: ['node', 'server.js'], port: 3000, env: {} },
  primary: 'h1',
  standby: ['h3'],
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
const ctx = { host, site };

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-transform-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function volume(files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'v-'));
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

const readJson = (dir: string, f: string): unknown => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));

test('templates: one placeholder keeps its type; embedded ones become text', () => {
  assert.equal(renderTemplate('{{host.address}}', ctx), '127.0.3.1');
  assert.equal(renderTemplate('{{ host.name }}', ctx), 'h3');
  assert.equal(renderTemplate('{{host.profile.cpus}}', ctx), 4);
  assert.equal(renderTemplate('{{host.profile.disk}}', ctx), 'ssd');
  assert.equal(renderTemplate('{{site.name}}', ctx), 'shop');
  assert.equal(renderTemplate('{{site.app.port}}', ctx), 3000);
  assert.equal(renderTemplate('http://{{host.address}}:{{site.app.port}}/', ctx), 'http://127.0.3.1:3000/');
  assert.equal(renderTemplate('plain', ctx), 'plain');
});

test('templates: unknown placeholders are errors naming them', () => {
  assert.throws(
    () => renderTemplate('{{host.ip}}', ctx),
    (e: unknown) => e instanceof UnderstudyError && /\{\{host\.ip\}\}/.test(e.message),
  );
  assert.throws(() => renderTemplate('{{host.profile.gpus}}', ctx), /host h3 has no profile\.gpus/);
  assert.throws(() => renderTemplate('{{host.address', ctx), /unbalanced/);
  assert.match(checkTemplate('{{site.front}}') ?? '', /unknown placeholder \{\{site\.front\}\}/);
  assert.equal(checkTemplate('{{host.profile.anything}}'), undefined);
});

test('renderRules: templates filled per key, literal values kept, errors name rule and key', () => {
  const rules = renderRules(
    [
      {
        file: 'config/site.json',
        set: { 'listen.host': '{{host.address}}', 'listen.port': '{{site.app.port}}', workers: '{{host.profile.cpus}}' },
        values: { debug: false },
      },
    ],
    ctx,
  );
  assert.deepEqual(rules, [{ file: 'config/site.json', set: { 'listen.host': '127.0.3.1', 'listen.port': 3000, workers: 4, debug: false } }]);
  assert.throws(() => renderRules([{ file: 'a.json', set: { x: '{{nope}}' } }], ctx), /transform of a\.json, key x: unknown placeholder \{\{nope\}\}/);
});

test('applyTransform: sets dotted keys, reports changes, keeps other keys, is idempotent', () => {
  const dir = volume({ 'config/site.json': JSON.stringify({ listen: { host: '127.0.1.1', port: 3000 }, workers: 1, name: 'shop', extra: [1, 2] }) });
  const rules = renderRules(
    [
      {
        file: 'config/site.json',
        set: {
          'listen.host': '{{host.address}}',
          'listen.port': '{{site.app.port}}',
          workers: '{{host.profile.cpus}}',
          'limits.memoryMb': '{{host.profile.memoryMb}}',
        },
      },
    ],
    ctx,
  );
  const changes = applyTransform(dir, rules);
  assert.deepEqual(changes, [
    { file: 'config/site.json', key: 'listen.host', from: '127.0.1.1', to: '127.0.3.1' },
    { file: 'config/site.json', key: 'workers', from: 1, to: 4 },
    { file: 'config/site.json', key: 'limits.memoryMb', from: undefined, to: 2048 },
  ]);
  assert.deepEqual(readJson(dir, 'config/site.json'), {
    listen: { host: '127.0.3.1', port: 3000 },
    workers: 4,
    name: 'shop',
    extra: [1, 2],
    limits: { memoryMb: 2048 },
  });
  const before = fs.statSync(path.join(dir, 'config/site.json')).mtimeMs;
  assert.deepEqual(applyTransform(dir, rules), [], 'second run changes nothing');
  assert.equal(fs.statSync(path.join(dir, 'config/site.json')).mtimeMs, before, 'and does not rewrite the file');
  assert.deepEqual(fs.readdirSync(path.join(dir, 'config')), ['site.json'], 'no temp file left behind');
});

test('applyTransform: creates a missing file; several rules on one file apply in order', () => {
  const dir = volume();
  const changes = applyTransform(dir, [
    { file: 'conf/new.json', set: { a: 1 } },
    { file: 'conf/new.json', set: { a: 2, 'b.c': 'x' } },
  ]);
  assert.equal(changes.length, 3);
  assert.deepEqual(readJson(dir, 'conf/new.json'), { a: 2, b: { c: 'x' } });
});

test('applyTransform: refuses paths out of the volume, unknown formats, bad JSON, keys through non-objects — writing nothing', () => {
  const dir = volume({ 'config/site.json': '{"listen":"127.0.0.1:3000","workers":1}', 'bad.json': '{nope' });
  const original = fs.readFileSync(path.join(dir, 'config/site.json'), 'utf8');
  const refused = (rules: { file: string; set: Record<string, unknown> }[], re: RegExp, code = 'US_TRANSFORM_FAILED'): void => {
    assert.throws(
      () => applyTransform(dir, rules),
      (e: unknown) => e instanceof UnderstudyError && e.code === code && re.test(e.message),
    );
  };
  refused([{ file: '../escape.json', set: { a: 1 } }], /outside the volume/, 'US_UNSAFE_PATH');
  refused([{ file: '/etc/x.json', set: { a: 1 } }], /relative/, 'US_UNSAFE_PATH');
  refused([{ file: 'config/site.conf', set: { a: 1 } }], /unsupported format/);
  refused([{ file: 'bad.json', set: { a: 1 } }], /bad\.json: not valid json/);
  refused(
    [
      { file: 'config/site.json', set: { workers: 2 } },
      { file: 'config/site.json', set: { 'listen.host': 'x' } },
    ],
    /"listen" is "127\.0\.0\.1:3000", not an object/,
  );
  refused([{ file: 'config/site.json', set: { '__proto__.x': 1 } }], /reserved/);
  assert.equal(fs.readFileSync(path.join(dir, 'config/site.json'), 'utf8'), original, 'nothing half-applied');
  assert.ok(!fs.existsSync(path.join(tmpRoot, 'escape.json')));
});

test('applyTransform: refuses a symbolic link that leads out of the volume', () => {
  const outside = volume({ 'secret.json': '{}' });
  const dir = volume();
  fs.symlinkSync(outside, path.join(dir, 'link'));
  assert.throws(() => applyTransform(dir, [{ file: 'link/secret.json', set: { a: 1 } }]), /symbolic link/);
  assert.equal(fs.readFileSync(path.join(outside, 'secret.json'), 'utf8'), '{}');
});

test('the demo rules fit the shop seed to another host', () => {
  const config = loadConfig('examples/demo.yaml');
  const dir = volume({ 'config/site.json': fs.readFileSync('examples/shop/seed/config/site.json', 'utf8') });
  const outlet = config.sites.outlet!;
  const changes = applyTransform(dir, renderRules(outlet.transform, { host: config.hosts.h4!, site: outlet }));
  assert.deepEqual(readJson(dir, 'config/site.json'), { listen: { host: '127.0.4.1', port: 3001 }, workers: 1, name: 'outlet' });
  assert.deepEqual(
    changes.map((c) => c.key),
    ['listen.host', 'listen.port', 'name'],
  );
});
