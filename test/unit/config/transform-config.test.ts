import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

after(cleanup);

const withHosts = (hosts: string): string => MINIMAL.replace(/hosts:\n(?: {2}.*\n)+/, `hosts:\n${hosts}`);
const withTransform = (rules: string): string => `${MINIMAL}    transform:\n${rules}`;

test('profile: paths and user are accepted and compiled; defaults unchanged; other keys kept', () => {
  const c = load(
    withHosts(`  h1: { address: 127.0.1.1, storage: array-a, profile: { cpus: 4, memoryMb: 8192, user: shop, paths: { logs: /var/log/shop, cache: /tmp/shop-cache }, disk: ssd } }
  h2: { address: 127.0.2.1, storage: array-b }
  h3: { address: 127.0.3.1, storage: array-b }
`),
  );
  assert.deepEqual(c.hosts.h1?.profile, { cpus: 4, memoryMb: 8192, user: 'shop', paths: { logs: '/var/log/shop', cache: '/tmp/shop-cache' }, disk: 'ssd' });
  assert.deepEqual(c.hosts.h2?.profile, { cpus: 1, memoryMb: 1024 });
});

test('profile: bad paths and users name the place', () => {
  assert.deepEqual(
    lines(
      withHosts(`  h1: { address: 127.0.1.1, storage: array-a, profile: { user: "no one", paths: { logs: var/log, "a b": /x } } }
  h2: { address: 127.0.2.1, storage: array-b, profile: { paths: [/x] } }
  h3: { address: 127.0.3.1, storage: array-b }
`),
    ),
    [
      '6:64: hosts.h1.profile.user: must be a user name (letters, digits, _ and -, starting with a letter or _)',
      '6:89: hosts.h1.profile.paths.logs: must be an absolute path like /var/log/shop',
      '6:98: hosts.h1.profile.paths.a b: bad key: names may use letters, digits, - and _, and must start with a letter or digit',
      '7:65: hosts.h2.profile.paths: must be a map of name: absolute path',
    ],
  );
});

test('transform: set rules on every format, explicit format, replace rules — compiled', () => {
  const c = load(
    withTransform(`      - { file: config/site.json, set: { listen.host: "{{host.address}}", debug: false } }
      - { file: conf/app.yaml, set: { cache.mb: "{{host.profile.memoryMb * 0.25}}" } }
      - { file: conf/php.ini, set: { server.workers: "{{max(1, host.profile.cpus - 1)}}" } }
      - { file: .env, set: { LOG_DIR: "{{host.profile.paths.logs}}" } }
      - { file: conf/app.conf, format: ini, set: { main.user: "{{host.profile.user}}" } }
      - file: conf/nginx.conf
        replace:
          - { match: "(?<=listen )\\\\S+(?=:80;)", with: "{{host.address}}" }
`),
  );
  assert.deepEqual(c.sites.shop?.transform, [
    { file: 'config/site.json', set: { 'listen.host': '{{host.address}}' }, values: { debug: false } },
    { file: 'conf/app.yaml', set: { 'cache.mb': '{{host.profile.memoryMb * 0.25}}' } },
    { file: 'conf/php.ini', set: { 'server.workers': '{{max(1, host.profile.cpus - 1)}}' } },
    { file: '.env', set: { LOG_DIR: '{{host.profile.paths.logs}}' } },
    { file: 'conf/app.conf', format: 'ini', set: { 'main.user': '{{host.profile.user}}' } },
    { file: 'conf/nginx.conf', set: {}, replace: [{ match: '(?<=listen )\\S+(?=:80;)', with: '{{host.address}}' }] },
  ]);
});

test('transform: bad rules name the place and say why', () => {
  assert.deepEqual(
    lines(
      withTransform(`      - { file: conf/x.conf, set: { a: "1" } }
      - { file: conf/x.conf, format: toml, set: { a: "1" } }
      - { file: conf/x.conf, set: { a: "1" }, replace: [{ match: a, with: b }] }
      - { file: conf/x.conf }
      - { file: conf/x.conf, replace: [{ match: "(", with: "{{host.profile.cpus * }}" }] }
      - { file: conf/x.conf, replace: [] }
      - { file: conf/x.json, format: text, set: { a: "1" } }
      - { file: conf/x.conf, format: yaml, replace: [{ match: a, with: b }] }
      - { file: conf/x.json, set: { a: "{{host.address * 2}}" } }
`),
    ),
    [
      '16:17: sites.shop.transform[0].file: no format is known for this file name (.json, .yaml/.yml, .ini/.cfg, .env (or a file named .env or .env.*); other files need format: json|yaml|ini|env, or replace rules)',
      '17:38: sites.shop.transform[1].format: must be one of json, yaml, ini, env, text',
      '18:56: sites.shop.transform[2].replace: a rule has either set or replace, not both',
      '19:9: sites.shop.transform[3]: needs set: { key: template } or replace: [{ match, with }]',
      '20:49: sites.shop.transform[4].replace[0].match: not a valid regular expression (Invalid regular expression: /(/gm: Unterminated group)',
      '20:60: sites.shop.transform[4].replace[0].with: template "{{host.profile.cpus * }}": {{host.profile.cpus *}}: expected a name or a number at the end',
      '21:39: sites.shop.transform[5].replace: must list at least one { match, with }',
      '22:38: sites.shop.transform[6].format: format text takes replace rules, not set',
      '23:38: sites.shop.transform[7].format: replace rules edit text; format yaml applies to set rules',
      '24:40: sites.shop.transform[8].set.a: {{host.address * 2}}: host.address is text, arithmetic needs numbers',
    ],
  );
});
