import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { api, sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { type Status, assertNoEvents, events } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * Errors that are not the host's never cause a failover:
 *
 * 1. The shop's optional uploads route (SHOP_UPLOADS=1) fails with 500 when a client
 *    leaves out its X-Upload-Name header, on every host. Under traffic that is mostly
 *    such uploads, the malfunction detector's error rate is far over its threshold,
 *    but the controller finds that the errors follow the request: no failover, no
 *    fence, one `errors-follow-request` event. Twice: after the bad uploads paused
 *    for a window and came back.
 * 2. The shop's rate limit (SHOP_RATE_LIMIT, per client address; the director and the
 *    probe both come from 127.0.0.1) answers 429 to its traffic and its probe: a sign
 *    of load. An event naming load, a reader added (the site may scale), the probe
 *    never counted as failed; no failover, no fence.
 */

const SLOT = claimSlot();
const WINDOW_MS = 2000;
/** Anything that would be an action on a host or a site's placement. */
const ACTIONS = [
  'failure-detected',
  'failover-started',
  'failover-complete',
  'failover-deferred',
  'failover-blocked',
  'failover-failed',
  'power-off',
  'restore-started',
  'switchover-started',
  'errors-follow-app',
];

async function send(url: string, method: 'GET' | 'POST', headers: Record<string, string> = {}, body?: unknown): Promise<number> {
  try {
    const res = await request(url, {
      method,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}

/**
 * A bounded upload-heavy load through the front: of every 10 requests, 7 uploads
 * without the header (while `bad` is on), 1 upload with it, 2 catalog reads.
 */
function startUploads(front: string, opts: { workers: number; maxMs: number }) {
  const r = { bad: [] as number[], good: [] as number[], gets: [] as number[] };
  const deadline = Date.now() + opts.maxMs;
  let stopped = false;
  const ctl = { bad: true };
  const worker = async (w: number) => {
    for (let i = 0; !stopped && Date.now() < deadline && i < 20_000; i++) {
      const slot = i % 10;
      if (slot < 7) {
        if (ctl.bad) r.bad.push(await send(`${front}/api/uploads`, 'POST', {}, { data: `w${w}-${i}` }));
        else await sleep(2);
      } else if (slot === 7) r.good.push(await send(`${front}/api/uploads`, 'POST', { 'x-upload-name': `w${w}-${i}` }, { data: 'ok' }));
      else r.gets.push(await send(`${front}/api/products`, 'GET'));
    }
  };
  const done = Promise.all(Array.from({ length: opts.workers }, (_, w) => worker(w)));
  return {
    result: r,
    ctl,
    stop: async () => {
      stopped = true;
      await done;
      return r;
    },
  };
}

test('an app that answers 500 to one kind of request (uploads without a header): no failover, no fence, the event; twice', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster({ slot: SLOT, env: { SHOP_UPLOADS: '1' }, health: { malfunction: { errorRate: 0.2, window: `${WINDOW_MS}ms` } } });
  t.after(() => cluster.stop());
  const before = await waitStreaming<Status>(cluster);
  assert.equal(before.sites[0]!.primary.host, 'h1');
  const h1 = cluster.hostAddress('h1');
  // Events from here on (the boot of h1 and h2 came before).
  const startId = Math.max(0, ...(await events(cluster)).map((e) => e.id));

  // The fault is real and belongs to the request: the same route answers 201 with the header and 500 without.
  assert.equal(await send(`http://${h1}:3000/api/uploads`, 'POST', { 'x-upload-name': 'direct' }, { data: 1 }), 201);
  assert.equal(await send(`http://${h1}:3000/api/uploads`, 'POST', {}, { data: 1 }), 500);

  const load = startUploads(cluster.front, { workers: 4, maxMs: 60_000 });
  t.after(() => load.stop());
  const first = await waitUntil('errors-follow-request', async () => (await events(cluster)).find((e) => e.kind === 'errors-follow-request'), 20_000, 100);
  assert.equal(first.host, 'h1');
  assert.match(
    first.message,
    /^shop: errors follow the request, not the host h1: POST \/api\/uploads fails \(\d+ of \d+\): \d+ of its \d+ latest requests succeed on h1: what fails depends on the request; meanwhile h1 answers GET \/api\/products \(\d+ answered well\).* and its probe\. No failover, no fencing/,
  );
  const ev = first.data.evidence as { rate: number; errorRate: number; requests: number; minRequests: number };
  assert.ok(ev.rate >= 0.2 && ev.requests >= ev.minRequests, `the malfunction detector raised for real: rate ${ev.rate} over ${ev.requests} requests`);
  const attribution = first.data.attribution as { owner: string; failing: { kind: string; verdict: string }[]; clean: { kind: string }[] };
  assert.equal(attribution.owner, 'request');
  assert.deepEqual(
    attribution.failing.map((f) => f.kind),
    ['POST /api/uploads'],
  );
  assert.deepEqual(first.data.excused, ['POST /api/uploads']);

  // The bad uploads go on for two more windows: nothing more (the kind left the host's error rate).
  await sleep(2 * WINDOW_MS + 500);
  let evs = await events(cluster);
  assert.equal(evs.filter((e) => e.kind === 'errors-follow-request').length, 1, 'one event while the same errors go on');

  // Twice in a row: the bad uploads pause for more than a window (the kind counts again), then come back.
  load.ctl.bad = false;
  await sleep(WINDOW_MS + 1500);
  load.ctl.bad = true;
  const second = await waitUntil(
    'a second errors-follow-request',
    async () => (await events(cluster)).filter((e) => e.kind === 'errors-follow-request')[1],
    20_000,
    100,
  );
  assert.equal(second.host, 'h1');
  await sleep(1000);
  const result = await load.stop();

  // The fault was real: hundreds of 500s through the front, while the good uploads and the reads all succeeded.
  assert.ok(result.bad.length > 200 && result.bad.every((s) => s === 500), `bad uploads: ${result.bad.length}, statuses ${[...new Set(result.bad)].join(',')}`);
  assert.ok(result.good.length > 20 && result.good.every((s) => s === 201), `good uploads: ${[...new Set(result.good)].join(',')}`);
  assert.ok(
    result.gets.every((s) => s === 200),
    `reads: ${[...new Set(result.gets)].join(',')}`,
  );

  // The actions not taken: no failover, no fence, no power change; same primary, same epoch, every host as it was.
  evs = (await events(cluster)).filter((e) => e.id > startId);
  assertNoEvents(evs, [...ACTIONS, 'power-on', 'scale-out-started']);
  const after = await api<Status>(cluster, '/v1/status');
  assert.equal(after.sites[0]!.primary.host, 'h1');
  assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch);
  assert.equal(after.sites[0]!.state, 'serving');
  for (const h of before.hosts) assert.equal(after.hosts.find((x) => x.name === h.name)!.power, h.power, `${h.name} power unchanged`);
  assert.equal(after.hosts.find((h) => h.name === 'h1')!.pid, before.hosts.find((h) => h.name === 'h1')!.pid, 'h1 was never restarted');
  t.diagnostic(`bad uploads ${result.bad.length} (all 500), good ${result.good.length}, reads ${result.gets.length}; ${first.message}`);
});

test(
  'an app that answers 429 to its probe and its traffic (a rate limit): an event naming load, a reader added; no failover, no fence',
  { timeout: 120_000 },
  async (t) => {
    const cluster = await startCluster({
      slot: SLOT,
      env: { SHOP_RATE_LIMIT: '100' },
      readonly: ['catalog.db', 'public/'],
      // A generous probe timeout: the flood shares two cores with every part, and a slow probe is not what this test is about.
      health: { probe: { every: '100ms', timeout: '1s', fall: 3, rise: 1 }, malfunction: { errorRate: 0.2, window: `${WINDOW_MS}ms` } },
      scale: { max: 2, cooldown: '60s', stabilization: '60s' },
    });
    t.after(() => cluster.stop());
    const before = await waitStreaming<Status>(cluster);
    const h1 = cluster.hostAddress('h1');
    const probes0 = before.sites[0]!.primary.probes!;

    // A bounded flood of reads (and a few orders) from one client address, far over 100 a second.
    const statuses = new Map<number, number>();
    let stopped = false;
    const deadline = Date.now() + 40_000;
    const worker = async (w: number) => {
      for (let i = 0; !stopped && Date.now() < deadline && i < 200_000; i++) {
        const s =
          i % 20 === 0
            ? await send(`${cluster.front}/api/orders`, 'POST', {}, { customer: `rl-${w}-${i}`, items: [{ productId: 1, qty: 1 }] })
            : await send(`${cluster.front}/api/products`, 'GET');
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }
    };
    const flood = Promise.all(Array.from({ length: 3 }, (_, w) => worker(w)));
    t.after(async () => {
      stopped = true;
      await flood;
    });

    // The fault is real: the app itself answers its health check 429 with Retry-After.
    const direct = await waitUntil(
      'a 429 from the app itself',
      async () => {
        const res = await request(`http://${h1}:3000/healthz`, { headersTimeout: 5000 });
        await res.body.dump();
        return res.statusCode === 429 ? res : null;
      },
      10_000,
      20,
    );
    assert.equal(direct.headers['retry-after'], '1');

    const shedding = await waitUntil('load-shedding', async () => (await events(cluster)).find((e) => e.kind === 'load-shedding'), 20_000, 100);
    assert.equal(shedding.host, 'h1');
    assert.match(
      shedding.message,
      /^shop: load on h1: the app sheds load: .*A sign of load, not a failure: no failover, no fencing\. Response: adding read-only hosts/,
    );
    const scaled = await waitUntil('scale-out-started for load', async () => (await events(cluster)).find((e) => e.kind === 'scale-out-started'), 20_000, 100);
    assert.match(scaled.message, /adding h\d as a read-only host \(load: the app sheds load/);
    // The probe was answered 429 all along, and never counted as failed: the primary stays healthy.
    const during = await api<Status>(cluster, '/v1/status');
    assert.equal(during.sites[0]!.primary.healthy, true);
    assert.equal(during.sites[0]!.primary.probes!.failed, probes0.failed, 'no failed probe');

    await sleep(2000);
    stopped = true;
    await flood;
    const cleared = await waitUntil('load-shedding-cleared', async () => (await events(cluster)).find((e) => e.kind === 'load-shedding-cleared'), 20_000, 100);
    assert.ok(cleared.at > shedding.at);

    const shed = statuses.get(429) ?? 0;
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    assert.ok(shed >= 50 && shed >= total / 20, `many answers were 429: ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.ok(
      [...statuses.keys()].every((s) => s === 200 || s === 201 || s === 429),
      `only 200, 201 and 429: ${JSON.stringify(Object.fromEntries(statuses))}`,
    );

    // The actions not taken.
    const evs = await events(cluster);
    assertNoEvents(evs, [...ACTIONS, 'errors-follow-request']);
    assert.equal(evs.filter((e) => e.kind === 'load-shedding').length, 1, 'one event per episode');
    const after = await api<Status>(cluster, '/v1/status');
    assert.equal(after.sites[0]!.primary.host, 'h1');
    assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch);
    assert.equal(after.hosts.find((h) => h.name === 'h1')!.power, 'on');
    assert.equal(after.hosts.find((h) => h.name === 'h1')!.pid, before.hosts.find((h) => h.name === 'h1')!.pid, 'h1 was never fenced or restarted');
    t.diagnostic(`answers ${JSON.stringify(Object.fromEntries(statuses))}; ${shedding.message}; ${scaled.message}`);
  },
);
