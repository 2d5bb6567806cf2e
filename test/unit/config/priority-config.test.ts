import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

after(cleanup);

test('sites.X.priority: defaults to 0; any whole number, negative too', () => {
  assert.equal(load(MINIMAL).sites.shop!.priority, 0);
  assert.equal(load(`${MINIMAL}    priority: 10\n`).sites.shop!.priority, 10);
  assert.equal(load(`${MINIMAL}    priority: -3\n`).sites.shop!.priority, -3);
});

test('sites.X.priority: anything else is reported at its place', () => {
  const message = 'must be a whole number, like 10 or -5 (higher wins a contested spare)';
  assert.deepEqual(lines(`${MINIMAL}    priority: high\n`), [`15:15: sites.shop.priority: ${message}`]);
  assert.deepEqual(lines(`${MINIMAL}    priority: 1.5\n`), [`15:15: sites.shop.priority: ${message}`]);
  assert.deepEqual(lines(`${MINIMAL}    priority: "2"\n`), [`15:15: sites.shop.priority: ${message}`]);
});
