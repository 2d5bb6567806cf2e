import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { request } from 'undici';
import { serveEventStream, type StepMessage } from '../../../src/api/event-stream.ts';
import { followEvents } from '../../../src/cli/event-follow.ts';
import { StateStore, type EventRecord } from '../../../src/state/state-store.ts';

/** GET /v1/events/stream against a real SQLite store, read by the CLI's follower over real sockets. */

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function streamServer(store: StateStore, port = 0): Promise<{ server: http.Server; url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    serveEventStream(store, req, res, u.searchParams);
  });
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({
        server,
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      }),
    ),
  );
}

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('the stream sends the backlog after Last-Event-ID, then live events and steps; the follower resumes across a restart without a gap or a duplicate', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-sse-'));
  dirs.push(dir);
  const store = new StateStore(dir);
  const e1 = store.addEvent({ site: 'shop', host: null, kind: 'a', message: '1', data: {} });
  store.addEvent({ site: 'shop', host: null, kind: 'b', message: '2', data: {} });
  let srv = await streamServer(store);
  const port = Number(new URL(srv.url).port);

  const got: EventRecord[] = [];
  const steps: StepMessage[] = [];
  const lost: string[] = [];
  const ac = new AbortController();
  const following = followEvents({ api: srv.url }, e1.id, { event: (e) => got.push(e), step: (s) => steps.push(s), lost: (w) => lost.push(w) }, ac.signal);
  await until('backlog', () => got.length === 1);
  assert.deepEqual(
    got.map((e) => e.message),
    ['2'],
    'only what came after the id it resumed from',
  );

  const rb = store.startRunbook('shop', 'failover', {});
  store.journal(rb.id, 'fence', 'begin');
  store.journal(rb.id, 'fence', 'end', { ms: 12 });
  store.addEvent({ site: 'shop', host: 'h3', kind: 'c', message: '3', data: {} });
  await until('live', () => got.length === 2 && steps.length === 2);
  assert.deepEqual(
    steps.map((s) => `${s.kind}#${s.runbook}:${s.step}:${s.phase}`),
    [`failover#${rb.id}:fence:begin`, `failover#${rb.id}:fence:end`],
  );
  assert.equal(steps[1]!.ms, 12);

  // The controller goes away; events are written meanwhile; it comes back on the same port.
  await srv.close();
  store.addEvent({ site: 'shop', host: null, kind: 'd', message: '4', data: {} });
  store.addEvent({ site: null, host: null, kind: 'e', message: '5', data: {} });
  await until('noticed the loss', () => lost.length === 1);
  srv = await streamServer(store, port);
  await until('resumed', () => got.length === 4, 8000);
  store.addEvent({ site: 'shop', host: null, kind: 'f', message: '6', data: {} });
  await until('live again', () => got.length === 5);
  assert.deepEqual(
    got.map((e) => e.message),
    ['2', '3', '4', '5', '6'],
    'every event once, in order',
  );
  ac.abort();
  await following;
  await srv.close();
  store.close();
});

test('?site= keeps one site; ?tail=N starts N events back; the answer is text/event-stream with ids', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-sse-'));
  dirs.push(dir);
  const store = new StateStore(dir);
  for (let i = 1; i <= 5; i++) store.addEvent({ site: i % 2 ? 'shop' : 'outlet', host: null, kind: 'k', message: String(i), data: {} });
  const srv = await streamServer(store);
  const read = async (q: string): Promise<{ type: string; text: string }> => {
    const ac = new AbortController();
    const res = await request(`${srv.url}/?${q}`, { signal: ac.signal });
    let text = '';
    const timer = setTimeout(() => ac.abort(), 300);
    try {
      for await (const c of res.body) text += (c as Buffer).toString();
    } catch {
      /* aborted */
    }
    clearTimeout(timer);
    return { type: String(res.headers['content-type']), text };
  };
  const tail = await read('tail=2');
  assert.match(tail.type, /^text\/event-stream/);
  assert.deepEqual(
    [...tail.text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])),
    [4, 5],
  );
  const shop = await read('after=0&site=shop');
  assert.deepEqual(
    [...shop.text.matchAll(/"message":"(\d)"/g)].map((m) => m[1]),
    ['1', '3', '5'],
  );
  assert.match(shop.text, /^retry: 1000$/m);
  await srv.close();
  store.close();
});

test("a stream ends when its store closes (a controller's term ended): the client reconnects to the next term's store", async (t) => {
  const store = new StateStore({ mirrored: true });
  store.addEvent({ site: null, host: null, kind: 'a', message: '1', data: {} });
  const srv = await streamServer(store);
  t.after(() => srv.close());
  const res = await request(`${srv.url}/v1/events/stream?after=0`);
  assert.equal(res.statusCode, 200);
  let text = '';
  const ended = (async () => {
    for await (const chunk of res.body) text += (chunk as Buffer).toString('utf8');
  })();
  await until('the backlog', () => text.includes('"message":"1"'));
  store.close();
  await ended;
  assert.match(text, /^retry: 1000/, 'the client is told to reconnect within a second');
});
