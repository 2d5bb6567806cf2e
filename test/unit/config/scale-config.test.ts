import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

/** `sites.X.scale` — max, cooldown, stabilization, readPaths. */

after(cleanup);

test('scale: defaults, and every field as written', () => {
  assert.deepEqual(load(MINIMAL).sites.shop?.scale, { max: 1, cooldownMs: 30_000, stabilizationMs: 30_000 });
  const c = load(`${MINIMAL}    scale: { max: 3, cooldown: 5s, stabilization: 1m, readPaths: [/, /api/products, /public/*] }\n`);
  assert.deepEqual(c.sites.shop?.scale, { max: 3, cooldownMs: 5000, stabilizationMs: 60_000, readPaths: ['/', '/api/products', '/public/*'] });
});

test('scale: bad stabilization and read paths are named with file:line:col', () => {
  const text = `${MINIMAL}    scale: { max: 2, stabilization: soon, readPaths: [api/products, "/a*b"] }\n`;
  assert.deepEqual(lines(text), [
    '15:37: sites.shop.scale.stabilization: must be a duration like 200ms',
    '15:55: sites.shop.scale.readPaths[0]: must be a URL path starting with /, optionally ending in * (a prefix), like /api/products or /public/*',
    '15:69: sites.shop.scale.readPaths[1]: must be a URL path starting with /, optionally ending in * (a prefix), like /api/products or /public/*',
  ]);
  assert.deepEqual(lines(`${MINIMAL}    scale: { readPaths: [] }\n`), [
    '15:25: sites.shop.scale.readPaths: must list at least one path (leave it out for every path)',
  ]);
});
