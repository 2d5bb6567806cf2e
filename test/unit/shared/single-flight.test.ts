import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SingleFlight } from '../../../src/shared/single-flight.ts';

test('callers of the same key during a run share it; after it settles a new run starts; keys are apart', async () => {
  const flights = new SingleFlight<string>();
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const powerOn = () =>
    flights.run('h1', async () => {
      runs++;
      await gate;
      return `on ${runs}`;
    });
  const all = Promise.all([powerOn(), powerOn(), powerOn()]);
  const other = flights.run('h2', async () => 'h2 on');
  assert.equal(await other, 'h2 on', 'another key does not wait');
  release();
  assert.deepEqual(await all, ['on 1', 'on 1', 'on 1']);
  assert.equal(runs, 1, 'one run for three callers');
  assert.equal(await powerOn(), 'on 2', 'settled: the next call runs again');
});

test('an error is shared by the callers of that run, and does not stick', async () => {
  const flights = new SingleFlight<string>();
  let runs = 0;
  const call = () =>
    flights.run('h1', async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 10));
      if (runs === 1) throw new Error('relay refused');
      return 'on';
    });
  const results = await Promise.allSettled([call(), call()]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['rejected', 'rejected'],
  );
  assert.equal(runs, 1);
  assert.equal(await call(), 'on');
});

test('a function that throws at once is a rejection of the run, not an exception of run()', async () => {
  const flights = new SingleFlight<number>();
  const p = flights.run(1, () => {
    throw new Error('synchronous');
  });
  await assert.rejects(p, /synchronous/);
  assert.equal(await flights.run(1, async () => 'next'), 'next');
});
