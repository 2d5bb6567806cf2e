import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SyncBarrierClient } from '../../../src/director/sync-barrier.ts';

/**
 * The director's group commit: barriers asked for in one event-loop turn share one call
 * to the storage processor, made after all of them; a barrier asked for later gets a
 * call of its own (it must reach the storage processor after its answer arrived).
 */
test('barriers of one event-loop turn share one call; a later one gets its own', async (t) => {
  const calls: { at: number; body: unknown }[] = [];
  let answer = { state: 'sync', waitedMs: 1 } as Record<string, unknown>;
  const server = http.createServer((req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => {
      b += c.toString();
    });
    req.on('end', () => {
      calls.push({ at: Date.now(), body: JSON.parse(b) });
      setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(answer));
      }, 20);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new SyncBarrierClient();
  t.after(async () => {
    await client.destroyAll();
    server.close();
  });
  const route = { storageUrl: url, onReplicaLost: 'degrade' as const, timeoutMs: 500 };

  const first = await Promise.all([client.barrier('shop', route), client.barrier('shop', route), client.barrier('shop', route)]);
  assert.deepEqual(first, [{ outcome: 'sync' }, { outcome: 'sync' }, { outcome: 'sync' }]);
  assert.equal(calls.length, 1, 'one call for three barriers of one turn');
  assert.deepEqual(calls[0]!.body, { onReplicaLost: 'degrade', timeoutMs: 500 });

  // Another site, or other settings, never share a call.
  await Promise.all([client.barrier('shop', route), client.barrier('other', route), client.barrier('shop', { ...route, onReplicaLost: 'strict' })]);
  assert.equal(calls.length, 4);

  // A barrier asked for while a call is in flight is not served by it.
  const p1 = client.barrier('shop', route);
  await new Promise((r) => setTimeout(r, 5)); // the call is out
  const p2 = client.barrier('shop', route);
  await Promise.all([p1, p2]);
  assert.equal(calls.length, 6, 'the later barrier made its own call');
  assert.deepEqual(client.counts, { barriers: 8, calls: 6 });

  // Every waiter of a call gets its answer, also a refusal.
  answer = { state: 'timeout', waitedMs: 500, reason: 'replica gone' };
  const r = await Promise.all([client.barrier('shop', route), client.barrier('shop', route)]);
  assert.deepEqual(r, [
    { outcome: 'timeout', reason: 'replica gone' },
    { outcome: 'timeout', reason: 'replica gone' },
  ]);
});
