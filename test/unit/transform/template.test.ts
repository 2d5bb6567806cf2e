import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostConfig, SiteConfig } from '../../../src/config/types.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { renderRules } from '../../../src/transform/render-rules.ts';
import { checkTemplate, renderTemplate } from '../../../src/transform/template.ts';

const host: HostConfig = {
  name: 'h2',
  address: '127.0.2.1',
  storage: 'b',
  power: 'local',
  agentPort: 7001,
  boot: true,
  profile: { cpus: 3, memoryMb: 2048, user: 'www', paths: { logs: '/var/log/shop' }, 'max-conns': 100, ratio: 0.29, label: 'fast' },
};
const site = { name: 'shop', app: { command: ['node'], port: 3000, env: {} } } as unknown as SiteConfig;
const ctx = { host, site };
const r = (t: string): unknown => renderTemplate(t, ctx);

test('templates: nested profile values — paths and user', () => {
  assert.equal(r('{{host.profile.paths.logs}}'), '/var/log/shop');
  assert.equal(r('{{ host.profile.user }}'), 'www');
  assert.equal(r('{{host.profile.paths.logs}}/access.log'), '/var/log/shop/access.log');
  assert.deepEqual(r('{{host.profile.paths}}'), { logs: '/var/log/shop' });
  assert.equal(r('{{host.profile.max-conns}}'), 100, 'names may contain -');
  assert.throws(() => r('{{host.profile.paths.cache}}'), /host h2 has no profile\.paths\.cache/);
  assert.throws(() => r('{{host.profile.user.name}}'), /host h2 has no profile\.user\.name/);
});

test('templates: arithmetic gives whole numbers, rounded down', () => {
  assert.equal(r('{{host.profile.memoryMb * 0.25}}'), 512);
  assert.equal(r('{{host.profile.memoryMb / 3}}'), 682);
  assert.equal(r('{{host.profile.cpus * 2 + 1}}'), 7);
  assert.equal(r('{{(host.profile.cpus + 1) * 2}}'), 8);
  assert.equal(r('{{host.profile.cpus - 1}}'), 2);
  assert.equal(r('{{-host.profile.cpus / 2}}'), -2, 'down is towards minus infinity');
  assert.equal(r('{{host.profile.ratio * 100}}'), 29, 'not 28 from 28.999999999999996');
  assert.equal(r('{{max(1, host.profile.cpus - 4)}}'), 1);
  assert.equal(r('{{min(host.profile.memoryMb / 4, 256)}}'), 256);
  assert.equal(r('{{site.app.port + 1}}'), 3001);
  assert.equal(r('{{1.5}}'), 1);
  assert.equal(r('-Xmx{{host.profile.memoryMb / 2}}m -XX:ParallelGCThreads={{host.profile.cpus}}'), '-Xmx1024m -XX:ParallelGCThreads=3');
});

test('templates: bad expressions are errors that say what is wrong', () => {
  const fails = (t: string, re: RegExp): void => {
    assert.throws(
      () => r(t),
      (e: unknown) => e instanceof UnderstudyError && e.code === 'US_TEMPLATE_FAILED' && re.test(e.message),
      t,
    );
  };
  fails('{{host.profile.user * 2}}', /\{\{host\.profile\.user \* 2\}\}: host\.profile\.user is "www", not a number/);
  fails('{{host.profile.cpus / 0}}', /division by zero/);
  fails('{{host.profile.cpus *}}', /expected a name or a number at the end/);
  fails('{{host.profile.cpus ^ 2}}', /unexpected "\^" at column 19/);
  fails('{{pow(2, 3)}}', /unknown function pow\(\); known: min\(\), max\(\)/);
  fails('{{(host.profile.cpus}}', /expected "\)" at the end/);
  fails('{{}}', /empty placeholder/);
  fails('{{host.profile.cpus-1}}', /no profile\.cpus-1 \(for arithmetic, write spaces around -\)/);
  fails('{{host.profile.gpus + 1}}', /host h2 has no profile\.gpus/);
});

test('checkTemplate: config-time checks of syntax, names, and text in arithmetic', () => {
  assert.equal(checkTemplate('{{host.profile.memoryMb * 0.25}}'), undefined);
  assert.equal(checkTemplate('{{max(1, host.profile.cpus - 1)}} workers'), undefined);
  assert.equal(checkTemplate('{{host.profile.paths.logs}}'), undefined);
  assert.match(checkTemplate('{{host.address + 1}}') ?? '', /\{\{host\.address \+ 1\}\}: host\.address is text, arithmetic needs numbers/);
  assert.match(checkTemplate('{{host.cpus * 2}}') ?? '', /unknown placeholder \{\{host\.cpus\}\}/);
  assert.match(checkTemplate('{{host.profile.cpus * }}') ?? '', /expected a name or a number/);
});

test('renderRules: errors name the rule file and the key or pattern', () => {
  assert.throws(
    () => renderRules([{ file: 'conf/a.ini', set: { 'server.workers': '{{host.profile.user * 2}}' } }], ctx),
    (e: unknown) =>
      e instanceof UnderstudyError &&
      /^transform of conf\/a\.ini, key server\.workers: \{\{host\.profile\.user \* 2\}\}: host\.profile\.user is "www", not a number$/.test(e.message) &&
      (e.details as { key: string }).key === 'server.workers',
  );
  assert.throws(
    () => renderRules([{ file: 'n.conf', set: {}, replace: [{ match: 'listen \\S+', with: 'listen {{host.profile.paths.tmp}}' }] }], ctx),
    /transform of n\.conf, replace \/listen \\S\+\/: placeholder \{\{host\.profile\.paths\.tmp\}\}: host h2 has no profile\.paths\.tmp$/,
  );
  assert.deepEqual(
    renderRules(
      [
        {
          file: 'n.conf',
          format: 'text',
          set: {},
          replace: [
            { match: 'w \\d+', with: 'w {{host.profile.cpus}}' },
            { match: 'x', with: '{{host.profile.cpus}}' },
          ],
        },
      ],
      ctx,
    ),
    [
      {
        file: 'n.conf',
        format: 'text',
        set: {},
        replace: [
          { match: 'w \\d+', with: 'w 3' },
          { match: 'x', with: '3' },
        ],
      },
    ],
  );
});
