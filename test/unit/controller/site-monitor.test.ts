import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { SiteMonitor, type FailureEvidence } from '../../../src/monitor/site-monitor.ts';

const probe = { path: '/healthz', everyMs: 50, timeoutMs: 200, fall: 2, rise: 2 };

async function server(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void>; srv: http.Server }> {
  const srv = http.createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/healthz`,
    srv,
    close: () =>
      new Promise((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

test('a healthy app is reported healthy after rise probes and raises nothing', async (t) => {
  const s = await server((_req, res) => res.end(JSON.stringify({ ok: true })));
  t.after(() => s.close());
  const failures: FailureEvidence[] = [];
  const m = new SiteMonitor({ site: 'shop', host: 'h1', url: s.url, pid: null }, probe, (e) => failures.push(e));
  t.after(() => m.stop());
  m.start();
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(m.healthy, true);
  assert.equal(failures.length, 0);
});

test('one failed probe does nothing; fall failed probes in a row raise one failure naming the evidence', async (t) => {
  let mode: 'ok' | 'fail-once' | 'fail' = 'ok';
  const s = await server((_req, res) => {
    if (mode === 'fail-once') {
      mode = 'ok';
      res.statusCode = 500;
      res.end('{}');
      return;
    }
    if (mode === 'fail') {
      res.statusCode = 500;
      res.end('{}');
      return;
    }
    res.end(JSON.stringify({ ok: true }));
  });
  t.after(() => s.close());
  const failures: FailureEvidence[] = [];
  const m = new SiteMonitor({ site: 'shop', host: 'h1', url: s.url, pid: null }, probe, (e) => failures.push(e));
  t.after(() => m.stop());
  m.start();
  await new Promise((r) => setTimeout(r, 200));
  mode = 'fail-once';
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(failures.length, 0, 'a single lost probe is no reason');
  mode = 'fail';
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(failures.length, 1);
  assert.equal(failures[0]!.kind, 'probe');
  assert.equal(failures[0]!.probes.length, 2);
  assert.equal(failures[0]!.probes[0]!.error, 'status 500');
});

test('a dead process is a failure at once', async (t) => {
  const s = await server((_req, res) => res.end(JSON.stringify({ ok: true })));
  t.after(() => s.close());
  const failures: FailureEvidence[] = [];
  // A pid that does not exist: the highest possible pid is never ours.
  const m = new SiteMonitor({ site: 'shop', host: 'h1', url: s.url, pid: 4_194_303 }, probe, (e) => failures.push(e));
  t.after(() => m.stop());
  m.start();
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(failures.length, 1);
  assert.equal(failures[0]!.kind, 'process-gone');
});

test('every probe result goes to onProbe before it is judged, and is counted', async (t) => {
  let fail = false;
  const s = await server((_req, res) => {
    if (fail) {
      res.statusCode = 503;
      res.end('{}');
    } else res.end('fine');
  });
  t.after(() => s.close());
  const seen: { ok: boolean; status?: number }[] = [];
  const m = new SiteMonitor(
    { site: 'shop', host: 'h1', url: s.url, pid: null },
    probe,
    () => undefined,
    (r) => seen.push({ ok: r.ok, status: r.status }),
  );
  t.after(() => m.stop());
  m.start();
  await new Promise((r) => setTimeout(r, 200));
  fail = true;
  await new Promise((r) => setTimeout(r, 60));
  fail = false;
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(seen.length >= 4);
  assert.deepEqual(seen[0], { ok: true, status: 200 }, 'a plain-text 200 is healthy');
  assert.equal(m.counts.probes, seen.length);
  assert.equal(m.counts.failed, seen.filter((x) => !x.ok).length);
  assert.ok(m.counts.failed >= 1 && m.counts.lastFailedAt !== null);
});

test("probe timeouts while the controller's own event loop was held up are not the app's: no failure; with the stall not known, the same fault raises one", async (t) => {
  const { LoopStallClock } = await import('../../../src/monitor/loop-stall.ts');
  let block = 0;
  // The probe reaches the app, and then this process (the controller) is held up for 500 ms
  // before it reads the answer: the answer waits in the socket, the 200 ms timeout fires first.
  const s = await server((_req, res) => {
    if (block > 0) {
      block--;
      const until = Date.now() + 500;
      while (Date.now() < until) {
        /* held up */
      }
    }
    res.end(JSON.stringify({ ok: true }));
  });
  t.after(() => s.close());
  const run = async (clock: { start(): void; stop(): void; stalledDuring(from: number, to: number): number }) => {
    const failures: FailureEvidence[] = [];
    const m = new SiteMonitor({ site: 'shop', host: 'h1', url: s.url, pid: null }, probe, (e) => failures.push(e), undefined, undefined, clock);
    m.start();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(m.healthy, true);
    block = 2;
    await new Promise((r) => setTimeout(r, 1800));
    m.stop();
    clock.stop();
    return { failures, m };
  };
  const aware = await run(new LoopStallClock());
  assert.equal(block, 0, 'the fault ran: two probes held up');
  assert.equal(aware.failures.length, 0, 'no failure from timeouts the controller caused');
  assert.equal(aware.m.counts.inconclusive, 2, 'both timed-out probes were let go');
  assert.equal(aware.m.healthy, true);

  // The same fault, with a clock that knows of no stall: the timeouts count, as they did before.
  const blind = await run({ start: () => undefined, stop: () => undefined, stalledDuring: () => 0 });
  assert.equal(block, 0, 'the fault ran again');
  assert.equal(blind.failures.length, 1, 'two timeouts in a row: one failure');
  assert.equal(blind.m.counts.inconclusive, 0);
});

test('a connection error signalled while a probe is in flight is probed right after it: detection does not wait for the next regular probe', async (t) => {
  let crashed = false;
  let inFlight: (() => void) | null = null;
  const s = await server((req, res) => {
    if (crashed) {
      req.socket.destroy();
      return;
    }
    // The probe before the crash is answered late (healthy): the crash happens meanwhile.
    inFlight = () => res.end(JSON.stringify({ ok: true }));
  });
  t.after(() => s.close());
  const failures: FailureEvidence[] = [];
  const slow = { path: '/healthz', everyMs: 10_000, timeoutMs: 2000, fall: 2, rise: 1 };
  const m = new SiteMonitor({ site: 'shop', host: 'h1', url: s.url, pid: null }, slow, (e) => failures.push(e));
  t.after(() => m.stop());
  m.start();
  const deadline = Date.now() + 2000;
  while (inFlight === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.ok(inFlight, 'the first probe reached the app');
  crashed = true;
  const crashAt = Date.now();
  m.connErrorSignalled(); // the director's signal, during the probe
  inFlight!(); // that probe is answered: healthy
  while (failures.length === 0 && Date.now() - crashAt < 1500) await new Promise((r) => setTimeout(r, 5));
  assert.equal(failures.length, 1, 'detected well before the next regular probe (10 s)');
  assert.equal(failures[0]!.kind, 'probe');
  assert.equal(failures[0]!.connErrorsSignalled, 1);
  assert.ok(failures[0]!.detectedAt - crashAt < 1000, `detected ${failures[0]!.detectedAt - crashAt} ms after the crash`);
});
