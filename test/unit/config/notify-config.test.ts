import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

/** `notify:`: webhooks and commands per event kind, secrets from env or files. */

after(cleanup);

test('notify: absent by default; a webhook and a command as written, with defaults', () => {
  assert.equal(load(MINIMAL).notify, undefined);
  const c = load(
    `${MINIMAL}notify:
  ops:
    webhook: { url: "https://hooks.example/u?k=1", headers: { Authorization: { env: OPS_AUTH }, X-Key: { file: secrets/key }, X-Team: shop } }
    events: [failover-*, drill-complete]
    sites: [shop]
  pager:
    command: { run: [scripts/page.sh, --urgent], timeout: 3s }
    retry: { min: 200ms, max: 2s, alertAfter: 3, giveUpAfter: 1h }
`,
    '/srv/shop',
  );
  assert.deepEqual(c.notify?.ops, {
    name: 'ops',
    webhook: {
      url: 'https://hooks.example/u?k=1',
      headers: { Authorization: { env: 'OPS_AUTH' }, 'X-Key': { file: path.resolve('/srv/shop', 'secrets/key') }, 'X-Team': { value: 'shop' } },
      timeoutMs: 5000,
    },
    events: ['failover-*', 'drill-complete'],
    sites: ['shop'],
    retry: { minMs: 1000, maxMs: 60_000, alertAfter: 5, giveUpAfterMs: 86_400_000 },
  });
  assert.deepEqual(c.notify?.pager, {
    name: 'pager',
    command: { run: ['scripts/page.sh', '--urgent'], timeoutMs: 3000 },
    events: ['*'],
    retry: { minMs: 200, maxMs: 2000, alertAfter: 3, giveUpAfterMs: 3_600_000 },
  });
});

test('notify: every mistake is named with file:line:col', () => {
  const text = `${MINIMAL}notify:
  a:
    webhook: { url: ftp://x, headers: { Authorization: { env: 1 } } }
    events: [Failover]
  b:
    sites: [nowhere]
    webhook: { url: http://127.0.0.1:9/x }
  c:
    webhook: { url: http://127.0.0.1:9/x }
    command: { run: [x] }
  d:
    command: { run: [x] }
    retry: { min: 5s, max: 1s }
`;
  assert.deepEqual(lines(text), [
    '17:21: notify.a.webhook.url: must be an http:// or https:// URL',
    '17:56: notify.a.webhook.headers.Authorization: must be a string, { env: NAME } or { file: PATH }',
    '18:14: notify.a.events[0]: must be an event kind like failover-complete, or a pattern like failover-* or *',
    '20:13: notify.b.sites[0]: unknown site nowhere (known: shop)',
    '23:5: notify.c: needs exactly one of webhook: { url } or command: { run: [program, ...] }',
    '27:28: notify.d.retry.max: must be at least retry.min',
  ]);
});
