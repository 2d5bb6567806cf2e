import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FencingRefusals } from '../../../src/controller/fencing-refusals.ts';
import type { NewEvent } from '../../../src/state/state-store.ts';

test("the parts' refusals become events: each new refusal once; a part first seen counts only a refusal since the term began", () => {
  const events: NewEvent[] = [];
  const r = new FencingRefusals((e) => events.push(e), 1000);
  const last = (at: number) => ({ token: 2, highest: 12, method: 'POST', url: '/v1/volumes/shop/promote', at });
  r.observe('storage array-a', null, undefined);
  r.observe('storage array-a', null, { highest: 12, refused: 0, lastRefused: null });
  r.observe('storage array-b', null, { highest: 12, refused: 3, lastRefused: last(500) });
  assert.equal(events.length, 0, 'nothing refused, or refused before this term began');
  r.observe('storage array-b', null, { highest: 12, refused: 5, lastRefused: last(1500) });
  r.observe('the agent of h1', 'h1', { highest: 12, refused: 1, lastRefused: last(1200) });
  assert.deepEqual(
    events.map((e) => [e.kind, e.host, e.data.part, e.data.refused, e.data.token]),
    [
      ['stale-leader-refused', null, 'storage array-b', 2, 2],
      ['stale-leader-refused', 'h1', 'the agent of h1', 1, 2],
    ],
  );
  assert.match(events[0]!.message, /storage array-b refused 2 command\(s\) .* POST \/v1\/volumes\/shop\/promote, carried fencing token 2 where 12 was seen/);
  r.observe('storage array-b', null, { highest: 12, refused: 5, lastRefused: last(1500) });
  assert.equal(events.length, 2, 'the same count again: no new event');
});
