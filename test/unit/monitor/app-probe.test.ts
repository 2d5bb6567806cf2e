import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createProbe, probeTarget } from '../../../src/monitor/app-probe.ts';
import { HttpProbe, statusAccepted } from '../../../src/monitor/http-probe.ts';
import { TcpProbe } from '../../../src/monitor/tcp-probe.ts';
import { classifyProbeError } from '../../../src/monitor/probe-evidence.ts';
import { freePort } from '../../support/free-port.ts';

/** A real HTTP app answering each path as the table says. */
async function app(routes: Record<string, (res: http.ServerResponse) => void>): Promise<{ base: string; port: number; close: () => Promise<void> }> {
  const srv = http.createServer((req, res) => {
    const r = routes[req.url ?? ''];
    if (r) r(res);
    else {
      res.statusCode = 404;
      res.end('Not Found: no such page here');
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

const send =
  (status: number, body: string, headers: Record<string, string> = {}) =>
  (res: http.ServerResponse) => {
    res.writeHead(status, headers);
    res.end(body);
  };

test('http probe, by default: any 2xx or 3xx is healthy whatever the body; redirects are not followed', async (t) => {
  const a = await app({
    '/health': send(200, '{"status":"UP"}', { 'content-type': 'application/json' }),
    '/plain': send(200, 'OK'),
    '/empty': send(204, ''),
    '/moved': send(302, '', { location: 'http://127.0.0.1:1/nowhere' }),
    '/broken': send(500, 'Internal Server Error\n  at handler (app.js:10)'),
    '/big': (res) => {
      res.writeHead(200);
      res.end('x'.repeat(2 * 1024 * 1024));
    },
  });
  t.after(() => a.close());
  for (const p of ['/health', '/plain', '/empty', '/moved', '/big']) {
    const probe = new HttpProbe(`${a.base}${p}`, 1000);
    const r = await probe.run();
    await probe.close();
    assert.equal(r.ok, true, `${p}: ${r.error}`);
    assert.equal(r.error, undefined);
  }
  const probe = new HttpProbe(`${a.base}/broken`, 1000);
  const r = await probe.run();
  assert.deepEqual(
    { ok: r.ok, error: r.error, status: r.status, answer: r.answer },
    { ok: false, error: 'status 500', status: 500, answer: 'Internal Server Error at handler (app.js:10)' },
  );
  assert.equal(classifyProbeError(r.error), 'bad-answer');
  const missing = await new HttpProbe(`${a.base}/healthz`, 1000).run();
  assert.equal(missing.error, 'status 404');
  assert.equal(missing.answer, 'Not Found: no such page here');
  await probe.close();
});

test('http probe: expect.status and expect.body tighten what is healthy', async (t) => {
  const a = await app({
    '/health': send(200, '{"status":"UP"}'),
    '/down': send(200, '{"status":"DOWN"}'),
    '/empty': send(204, ''),
  });
  t.after(() => a.close());
  const run = async (p: string, expect: { status?: string[]; body?: string }) => {
    const probe = new HttpProbe(`${a.base}${p}`, 1000, expect);
    try {
      return await probe.run();
    } finally {
      await probe.close();
    }
  };
  assert.equal((await run('/health', { status: ['200'], body: '"status":\\s*"UP"' })).ok, true);
  const down = await run('/down', { body: '"status":\\s*"UP"' });
  assert.equal(down.ok, false);
  assert.equal(down.error, 'body does not match /"status":\\s*"UP"/');
  assert.equal(down.answer, '{"status":"DOWN"}');
  assert.equal(classifyProbeError(down.error), 'bad-answer');
  assert.equal((await run('/empty', { status: ['200'] })).error, 'status 204');
  assert.equal((await run('/empty', { status: ['2xx'] })).ok, true);
  assert.equal(statusAccepted(301, undefined), true);
  assert.equal(statusAccepted(404, undefined), false);
  assert.equal(statusAccepted(199, undefined), false);
  assert.equal(statusAccepted(503, { status: ['5xx'] }), true);
  assert.equal(statusAccepted(503, { status: ['500', '2xx'] }), false);
});

test('http probe: refused and timed out are told apart (no answer is not a wrong answer)', async (t) => {
  const conns = new Set<net.Socket>();
  const hang = net.createServer((s) => {
    conns.add(s); /* accepts and never answers */
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of conns) s.destroy();
    return new Promise<void>((r) => hang.close(() => r()));
  });
  const port = (hang.address() as AddressInfo).port;
  const slow = new HttpProbe(`http://127.0.0.1:${port}/healthz`, 200);
  const r = await slow.run();
  await slow.close();
  assert.equal(r.error, 'timeout');
  const free = await freePort();
  const gone = new HttpProbe(`http://127.0.0.1:${free}/healthz`, 200);
  assert.equal((await gone.run()).error, 'refused');
  await gone.close();
});

test('tcp probe: healthy when the port accepts; refused when nothing listens; the factory picks it by target', async (t) => {
  const srv = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as AddressInfo).port;
  const target = probeTarget('127.0.0.1', port, { type: 'tcp', path: '' });
  assert.equal(target, `tcp://127.0.0.1:${port}`);
  const probe = createProbe(target, { timeoutMs: 300 });
  assert.ok(probe instanceof TcpProbe);
  assert.equal(probe.target, target);
  const r = await probe.run();
  assert.equal(r.ok, true);
  assert.equal(r.error, undefined);
  const free = await freePort();
  const gone = await createProbe(`tcp://127.0.0.1:${free}`, { timeoutMs: 300 }).run();
  assert.deepEqual({ ok: gone.ok, error: gone.error }, { ok: false, error: 'refused' });
  assert.equal(classifyProbeError(gone.error), 'refused');
  // An HTTP target gets an HTTP probe with the site's expect.
  const http = createProbe(probeTarget('127.0.0.1', port, { type: 'http', path: '/up' }), { timeoutMs: 300, expect: { status: ['200'] } });
  assert.ok(http instanceof HttpProbe);
  assert.equal(http.target, `http://127.0.0.1:${port}/up`);
  await http.close();
});

test('http probe: an endless body is read up to 64 KiB and judged then; a body that stops mid-way is a timeout, within the timeout', async (t) => {
  const a = await app({
    '/endless': (res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('healthy ');
      const chunk = 'x'.repeat(16 * 1024);
      const timer = setInterval(() => res.write(chunk), 5);
      res.on('close', () => clearInterval(timer));
    },
    '/stalls': (res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('healthy, but the rest never comes'); // 33 of the 100 bytes promised
    },
  });
  t.after(() => a.close());
  const endless = new HttpProbe(`${a.base}/endless`, 3000, { body: '^healthy ' });
  const started = Date.now();
  const r = await endless.run();
  await endless.close();
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.ok(Date.now() - started < 2000, `judged after ${Date.now() - started} ms, at 64 KiB, not at the timeout`);

  const stalls = new HttpProbe(`${a.base}/stalls`, 300);
  const s0 = Date.now();
  const s = await stalls.run();
  await stalls.close();
  assert.equal(s.ok, false);
  assert.equal(s.error, 'timeout');
  assert.ok(Date.now() - s0 < 1000, `gave up after ${Date.now() - s0} ms (timeout 300 ms)`);
});
