import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { BIN, ROOT, ports, sleep, startCluster, waitUntil, type Cluster } from '../support/cluster.ts';
import { apiCall, demoLikeConfig, type DemoStatus } from '../support/demo-like.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * Rehearsal under load on a demo-like cluster whose spares are cold: `understudy drill
 * shop` copies the replica onto the spare h3's storage, starts shop there behind a
 * drill front, sends a smoke request, and reports; the site's front serves every
 * request of a steady load meanwhile (reads and orders), its epoch and primary process
 * do not change, its replica keeps streaming; afterwards h3 is off, the copy is gone
 * from every storage system and the drill front is closed. Twice in a row. Refused,
 * with the reason: while another drill runs, while a runbook runs, and when the asked
 * spare is not free.
 */

const SLOT = claimSlot();

interface Report {
  runbook: number;
  ok: boolean;
  verdict: string;
  host: string;
  storage: string;
  front: string | null;
  dataAgeMs: number | null;
  copy: { bytes: number; databases: string[]; problems: unknown[]; heldMs: number } | null;
  smoke: { status: number; ms: number } | null;
  steps: { step: string; ms: number }[];
  totalMs: number | null;
  poweredOff: boolean;
  leftBehind: string[];
}

/** A steady load on the front: reads and orders from 4 clients, bounded in count and time; every answer is counted. */
function load(front: string, maxMs: number) {
  const stats = { requests: 0, failed: [] as string[], orders: [] as number[] };
  let stop = false;
  const deadline = Date.now() + maxMs;
  const worker = async (w: number) => {
    for (let i = 0; !stop && Date.now() < deadline && i < 5000; i++) {
      const order = i % 4 === 0;
      try {
        const res = await request(`${front}${order ? '/api/orders' : '/api/products'}`, {
          method: order ? 'POST' : 'GET',
          headers: order ? { 'content-type': 'application/json' } : {},
          body: order ? JSON.stringify({ customer: `drill-load-${w}`, items: [{ productId: 1 + (i % 3), qty: 1 }] }) : undefined,
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
        });
        const text = await res.body.text();
        stats.requests++;
        if (res.statusCode >= 400) stats.failed.push(`${order ? 'POST' : 'GET'} ${res.statusCode} ${text.slice(0, 100)}`);
        else if (order) stats.orders.push((JSON.parse(text) as { id: number }).id);
      } catch (e) {
        stats.requests++;
        stats.failed.push(`${order ? 'POST' : 'GET'} ${(e as Error).message}`);
      }
      await sleep(5);
    }
  };
  const done = Promise.all([0, 1, 2, 3].map(worker));
  return {
    stats,
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

function drillCli(cluster: Cluster, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'drill', ...args, '--api', cluster.api], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

test('a drill under load reports its figures, leaves the site untouched and nothing behind; twice; refused when it must be', { timeout: 90_000 }, async (t) => {
  const cluster = await startCluster({ slot: SLOT, config: (ctx) => demoLikeConfig(ctx, { bootSpares: false, backupEvery: '5s' }) });
  t.after(() => cluster.stop());
  const call = <T>(p: string, body?: unknown) => apiCall<T>(cluster.api, null, p, body);
  const status = async () => (await call<DemoStatus>('/v1/status')).body;
  const p = ports(SLOT);
  const storageUrls = [`http://127.0.0.1:${p.storageA}`, `http://127.0.0.1:${p.storageB}`];
  const directorUrl = `http://127.0.0.1:${p.director}`;
  const front = `http://127.0.0.1:${p.front}`;

  const before = await waitUntil(
    'both sites serving and streaming',
    async () => {
      const st = await status();
      return st.sites.every((s) => s.state === 'serving' && s.replication.state === 'streaming') ? st : null;
    },
    60_000,
    100,
  );
  const shop0 = before.sites.find((s) => s.name === 'shop')!;
  const h1pid = before.hosts.find((h) => h.name === 'h1')!.pid;
  assert.equal(before.hosts.find((h) => h.name === 'h3')!.power, 'off', 'the spare starts cold');

  const nothingLeft = async (label: string) => {
    for (const u of storageUrls) {
      const l = (await apiCall<{ copies: unknown[]; snapshots: unknown[] }>(u, null, '/v1/drills')).body;
      assert.deepEqual([l.copies, l.snapshots], [[], []], `${label}: no drill copy on ${u}`);
    }
    for (const storage of ['array-a', 'array-b']) {
      const dir = path.join(cluster.dir, storage, 'drills');
      const entries = fs.existsSync(dir) ? fs.readdirSync(dir).filter((e) => e !== '.out') : [];
      const out = fs.existsSync(path.join(dir, '.out')) ? fs.readdirSync(path.join(dir, '.out')) : [];
      assert.deepEqual([...entries, ...out], [], `${label}: ${dir} is empty`);
    }
    assert.deepEqual((await apiCall<{ drills: unknown[] }>(directorUrl, null, '/v1/drills')).body.drills, [], `${label}: no drill front`);
  };

  const reports: Report[] = [];
  for (const round of [1, 2]) {
    const l = load(front, 30_000);
    await sleep(500);
    const r = await drillCli(cluster, ['shop', '--json']);
    await sleep(300);
    await l.stop();
    assert.equal(r.code, 0, `drill ${round} exit code (stderr: ${r.err})`);
    const report = JSON.parse(r.out) as Report;
    reports.push(report);
    assert.ok(report.ok, report.verdict);
    assert.equal(report.host, 'h3', "the spare a failover would take (on the replica's storage)");
    assert.equal(report.smoke?.status, 200);
    assert.ok(report.copy && report.copy.databases.length >= 2 && report.copy.problems.length === 0, 'the copy verified');
    assert.ok(typeof report.dataAgeMs === 'number' && report.dataAgeMs >= 0 && report.dataAgeMs < 5000, `data age ${String(report.dataAgeMs)}`);
    for (const step of ['power-on', 'copy', 'transform', 'start', 'wait-healthy', 'front', 'smoke', 'teardown']) {
      assert.ok(
        report.steps.some((s) => s.step === step && s.ms >= 0),
        `step ${step} timed`,
      );
    }
    assert.ok(report.poweredOff);
    assert.deepEqual(report.leftBehind, []);
    // The site's front: every request answered; the load was real.
    assert.deepEqual(l.stats.failed, [], `round ${round}: no failed request`);
    assert.ok(l.stats.requests >= 50 && l.stats.orders.length >= 10, `round ${round}: ${l.stats.requests} requests, ${l.stats.orders.length} orders`);
    const st = await status();
    const shop = st.sites.find((s) => s.name === 'shop')!;
    assert.equal(shop.epoch, shop0.epoch, 'epoch unchanged');
    assert.equal(shop.primary.host, 'h1');
    assert.equal(st.hosts.find((h) => h.name === 'h1')!.pid, h1pid, 'the primary host was not restarted');
    assert.equal(shop.replication.state, 'streaming', 'the replica still streams');
    assert.equal(st.hosts.find((h) => h.name === 'h3')!.power, 'off', 'the spare is off again');
    await nothingLeft(`after drill ${round}`);
    // The drill front is closed: nothing answers there any more.
    await assert.rejects(request(`http://${report.front}/healthz`, { headersTimeout: 2000 }));
    // The orders placed during the drill are on the site.
    const last = l.stats.orders[l.stats.orders.length - 1]!;
    const o = await request(`${front}/api/orders/${last}`);
    assert.equal(o.statusCode, 200);
    await o.body.dump();
  }

  // Refused, with the reason: the asked host is not a free spare.
  const refusedHost = await call<{ error: { code: string; message: string } }>('/v1/sites/shop/drill', { to: 'h1' });
  assert.equal(refusedHost.status, 409);
  assert.match(refusedHost.body.error.message, /no spare of shop is free: h1 \(the primary\)/);
  // Refused while another drill runs.
  const first = call<Report>('/v1/sites/outlet/drill', {});
  await waitUntil(
    'the outlet drill to run',
    async () =>
      (await call<{ runbooks: { kind: string; status: string }[] }>('/v1/runbooks')).body.runbooks.some((r) => r.kind === 'drill' && r.status === 'running'),
    10_000,
    20,
  );
  const refusedBusy = await call<{ error: { code: string; message: string } }>('/v1/sites/shop/drill', {});
  assert.equal(refusedBusy.status, 409);
  assert.equal(refusedBusy.body.error.code, 'US_DRILL_REFUSED');
  assert.match(refusedBusy.body.error.message, /drill #\d+ of outlet is running|a drill of outlet is running/);
  const outletReport = (await first).body;
  assert.ok(outletReport.ok, outletReport.verdict);
  assert.equal(outletReport.host, 'h4', 'the outlet rehearses on its own failover spare');
  await nothingLeft('after the outlet drill');

  // What was not done: no failover, switchover or restore; neither site's epoch moved.
  const after = await status();
  assert.deepEqual(
    after.sites.map((s) => `${s.name}:${s.epoch}:${s.primary.host}`),
    before.sites.map((s) => `${s.name}:${s.epoch}:${s.primary.host}`),
  );
  const { runbooks } = (await call<{ runbooks: { kind: string; status: string }[] }>('/v1/runbooks')).body;
  assert.deepEqual(
    runbooks.map((r) => `${r.kind}:${r.status}`),
    ['drill:done', 'drill:done', 'drill:done'],
  );
  t.diagnostic(
    reports
      .map(
        (r) =>
          `drill #${r.runbook}: data age ≤${String(r.dataAgeMs)} ms, copy ${r.copy!.bytes} B held ${r.copy!.heldMs} ms, ${r.steps.map((s) => `${s.step} ${s.ms}`).join(', ')}; copy→smoke ${String(r.totalMs)} ms`,
      )
      .join('\n'),
  );
});
