import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { JsonRouter, createJsonServer, listen } from '../../../src/shared/http-json.ts';

/**
 * The router every part's API runs on: paths, parameters and queries split by hand,
 * bodies read from the stream's events. What a caller sends must reach the handler
 * exactly, also when the requests of one connection are pipelined, and a body cut off
 * by a closed connection must run no handler.
 */
test('params, query and bodies reach the handler; routes of the same shape and other methods stay apart', async (t) => {
  const seen: unknown[] = [];
  const router = new JsonRouter()
    .on('POST', '/v1/volumes/:site/sync-barrier', (q) => {
      seen.push({ route: 'barrier', site: q.params.site, body: q.body, mode: q.query.get('mode') });
      return { state: 'sync' };
    })
    .on('POST', '/v1/volumes/:site/promote', (q) => ({ promoted: q.params.site }))
    .on('GET', '/v1/volumes/:site/sync-barrier', () => ({ route: 'get' }))
    .on('POST', '/v1/raw', (q) => ({ bytes: Buffer.isBuffer(q.body) ? q.body.length : -1, first: Buffer.isBuffer(q.body) ? q.body[0] : -1 }));
  const server = createJsonServer(router);
  const addr: AddressInfo = await listen(server, '127.0.0.1', 0);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${addr.port}`;

  const post = async (path: string, body: string | Buffer, type = 'application/json'): Promise<{ status: number; json: unknown }> => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': type },
      body: typeof body === 'string' ? body : new Uint8Array(body),
    });
    return { status: res.status, json: await res.json() };
  };
  assert.deepEqual(await post('/v1/volumes/my%20shop/sync-barrier?mode=strict&x=1', '{"timeoutMs":2000}'), { status: 200, json: { state: 'sync' } });
  assert.deepEqual(seen.at(-1), { route: 'barrier', site: 'my shop', body: { timeoutMs: 2000 }, mode: 'strict' });
  assert.deepEqual(await post('/v1/volumes/shop/promote', ''), { status: 200, json: { promoted: 'shop' } });
  assert.deepEqual(await (await fetch(`${base}/v1/volumes/shop/sync-barrier`)).json(), { route: 'get' });
  assert.equal((await fetch(`${base}/v1/volumes/shop/nothing`, { method: 'POST' })).status, 404);
  // A binary body of several chunks arrives whole.
  const big = Buffer.alloc(3 << 20, 7);
  big[0] = 42;
  assert.deepEqual(await post('/v1/raw', big, 'application/octet-stream'), { status: 200, json: { bytes: 3 << 20, first: 42 } });
  assert.equal((await post('/v1/volumes/shop/sync-barrier', '{not json')).status, 400);
});

test('pipelined requests on one connection are answered in order; a body cut off by the client runs no handler', async (t) => {
  const calls: string[] = [];
  const router = new JsonRouter().on('POST', '/echo/:n', async (q) => {
    calls.push(q.params.n!);
    await new Promise((r) => setTimeout(r, q.params.n === '1' ? 30 : 0)); // the first answer takes longest
    return { n: q.params.n, body: q.body };
  });
  const server = createJsonServer(router);
  const addr: AddressInfo = await listen(server, '127.0.0.1', 0);
  t.after(() => new Promise<void>((r) => server.close(() => r())));

  const request = (n: number, body: string): string =>
    `POST /echo/${n} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const sock = net.connect(addr.port, '127.0.0.1');
  t.after(() => sock.destroy());
  let got = '';
  sock.on('data', (c: Buffer) => {
    got += c.toString();
  });
  sock.write(request(1, '{"a":1}') + request(2, '{"b":2}') + request(3, '{"c":3}'));
  const deadline = Date.now() + 5000;
  while ((got.match(/HTTP\/1\.1 200/g) ?? []).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const bodies = [...got.matchAll(/\{"n":"(\d)","body":(\{[^}]*\})\}/g)].map((m) => [m[1], m[2]]);
  assert.deepEqual(bodies, [
    ['1', '{"a":1}'],
    ['2', '{"b":2}'],
    ['3', '{"c":3}'],
  ]);

  // Half a body, then the connection closes: the handler never runs.
  const before = calls.length;
  const cut = net.connect(addr.port, '127.0.0.1');
  await new Promise<void>((r) => cut.once('connect', () => r()));
  cut.write('POST /echo/9 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"half":');
  await new Promise((r) => setTimeout(r, 50));
  cut.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls.length, before, 'no handler ran for the cut-off body');
  // The server still answers.
  const res = await fetch(`http://127.0.0.1:${addr.port}/echo/4`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 200);
});

test('settled(): a closed server waits for the handlers still running, and no longer than its bound', async () => {
  let finished = false;
  const router = new JsonRouter()
    .on('POST', '/slow', async () => {
      await new Promise((r) => setTimeout(r, 150));
      finished = true;
      return { ok: true };
    })
    .on('POST', '/stuck', () => new Promise(() => undefined));
  const server = createJsonServer(router);
  const addr: AddressInfo = await listen(server, '127.0.0.1', 0);
  const call = (path: string): void => {
    fetch(`http://127.0.0.1:${addr.port}${path}`, { method: 'POST' }).catch(() => undefined);
  };
  call('/slow');
  await new Promise((r) => setTimeout(r, 50)); // the handler runs
  await new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  assert.equal(finished, false, 'the handler outlives its closed connection');
  await server.settled();
  assert.equal(finished, true, 'settled() waited for it');

  const stuck = createJsonServer(router);
  const a2: AddressInfo = await listen(stuck, '127.0.0.1', 0);
  fetch(`http://127.0.0.1:${a2.port}/stuck`, { method: 'POST' }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 50));
  await new Promise<void>((r) => {
    stuck.close(() => r());
    stuck.closeAllConnections();
  });
  const t0 = performance.now();
  await stuck.settled(100);
  const waited = performance.now() - t0;
  assert.ok(waited >= 90 && waited < 1000, `a handler that never ends is waited for only up to the bound (${Math.round(waited)} ms)`);
});
