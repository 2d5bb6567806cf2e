import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MalfunctionTriage, type TriageInput } from '../../../src/controller/malfunction-triage.ts';
import type { Detection } from '../../../src/monitor/detection.ts';
import type { ReplayAnswer } from '../../../src/monitor/error-attribution.ts';
import { MalfunctionWatch } from '../../../src/monitor/malfunction-watch.ts';
import type { RequestKindStats, SiteStats } from '../../../src/shared/contracts.ts';
import { FakeClock } from '../monitor/fake-clock.ts';

interface Ev {
  kind: string;
  host: string | null;
  message: string;
  data: Record<string, unknown>;
}

/** A watch on `host` fed `phases` of per-kind traffic (polls every 250 ms); returns it and what it raised. */
function watched(clock: FakeClock, host: string, phases: { ms: number; kinds: Record<string, [number, number, string[]?]> }[]) {
  const upstream = `${host}:3000`;
  const found: Detection[] = [];
  const w = new MalfunctionWatch(
    { site: 'shop', host, upstream },
    { errorRate: 0.2, windowMs: 2000, minRequests: 10, now: clock.now },
    () => 0,
    (d) => found.push(d),
  );
  const kinds = new Map<string, RequestKindStats>();
  for (const p of phases) {
    for (let t = 0; t < p.ms; t += 250) {
      clock.advance(250);
      for (const [kind, [n, errors, samples]] of Object.entries(p.kinds)) {
        const k = kinds.get(kind) ?? { kind, method: kind.split(' ')[0]!, requests: 0, errors: 0, shed: 0 };
        k.requests += n;
        k.errors += errors;
        if (samples) k.samples = samples;
        kinds.set(kind, k);
      }
      const list = [...kinds.values()].map((k) => ({ ...k }));
      const stats: SiteStats[] = [
        {
          site: 'shop',
          epoch: 1,
          held: 0,
          heldTimedOut: 0,
          upstreams: [
            {
              upstream,
              requests: list.reduce((s, k) => s + k.requests, 0),
              errors5xx: list.reduce((s, k) => s + k.errors, 0),
              connErrors: 0,
              lastConnErrorAt: null,
              latencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
              recentLatencyMs: { p50: 1, p95: 1, p99: 1, count: 0 },
              inflight: 0,
              kinds: list,
            },
          ],
        },
      ];
      w.observeStats(stats);
    }
  }
  return { w, found };
}

function input(host: string, watch: MalfunctionWatch, d: Detection): TriageInput {
  return {
    site: 'shop',
    host,
    endpoint: `${host}:3000`,
    detection: d,
    watch,
    lastProbe: { ok: true, at: 0, latencyMs: 1, status: 200 },
    windowMs: 2000,
    probeTimeoutMs: 300,
  };
}

function harness(opts: { replay?: (endpoint: string, path: string) => ReplayAnswer; others?: { host: string; endpoint: string }[] } = {}) {
  const clock = new FakeClock();
  const events: Ev[] = [];
  const replays: string[] = [];
  const triage = new MalfunctionTriage({
    addEvent: (e) => {
      events.push({ kind: e.kind, host: e.host, message: e.message, data: e.data });
    },
    others: () => opts.others ?? [],
    replay: async (endpoint, path) => {
      replays.push(`${endpoint}${path}`);
      return opts.replay?.(endpoint, path) ?? { status: 500 };
    },
    now: clock.now,
  });
  return { clock, events, replays, triage };
}

test("errors that follow the request: no failover, one event, the kind leaves the watch's rate", async () => {
  const h = harness();
  const { w, found } = watched(h.clock, 'h1', [{ ms: 4000, kinds: { 'POST /api/uploads': [8, 7], 'GET /api/products': [2, 0] } }]);
  assert.equal(found.length, 1);
  const v = await h.triage.triage(input('h1', w, found[0]!));
  assert.deepEqual(v, { act: 'keep', why: 'request' });
  assert.deepEqual(
    h.events.map((e) => e.kind),
    ['errors-follow-request'],
  );
  assert.match(h.events[0]!.message, /^shop: errors follow the request, not the host h1: POST \/api\/uploads fails .*No failover, no fencing/);
  assert.deepEqual(w.excusedKinds, ['POST /api/uploads']);
  assert.deepEqual(h.replays, [], 'a POST is never sent again');
});

test("a regression on the host: fail over, with the attribution in the evidence; a malfunction on the new primary is the app's: once told, never acted on", async () => {
  const h = harness();
  const one = watched(h.clock, 'h1', [
    { ms: 3000, kinds: { 'POST /api/orders': [5, 0], 'GET /api/products': [5, 0] } },
    { ms: 3000, kinds: { 'POST /api/orders': [5, 5], 'GET /api/products': [5, 0] } },
  ]);
  const v = await h.triage.triage(input('h1', one.w, one.found[0]!));
  assert.equal(v.act, 'fail-over');
  if (v.act !== 'fail-over') return;
  assert.match(v.detection.reason, /the host's errors: POST \/api\/orders: h1 answered it well/);
  assert.equal((v.detection.data.attribution as { owner: string }).owner, 'host');
  h.triage.noteFailover('shop', 'h1', v.detection, 2000);
  assert.deepEqual(h.triage.incident('shop')?.cause, ['POST /api/orders']);

  // On h2 the same requests fail: the app's.
  const two = watched(h.clock, 'h2', [{ ms: 4000, kinds: { 'POST /api/orders': [5, 5], 'GET /api/products': [5, 0] } }]);
  assert.equal(two.found.length, 1);
  assert.deepEqual(await h.triage.triage(input('h2', two.w, two.found[0]!)), { act: 'keep', why: 'app' });
  assert.deepEqual(
    h.events.map((e) => e.kind),
    ['errors-follow-app'],
  );
  assert.match(
    h.events[0]!.message,
    /^shop: errors follow the app, not the host: after the malfunction failover from h1, h2 fails POST \/api\/orders as h1 did/,
  );
  // A probe malfunction in the same incident: not acted on either, and told once only.
  const probe: Detection = {
    source: 'probe-content',
    failure: 'malfunction',
    reason: 'malfunction: 2 probes in a row answered wrongly',
    detectedAt: h.clock.now(),
    lastHealthyAt: 0,
    data: {},
  };
  assert.deepEqual(await h.triage.triage(input('h2', two.w, probe)), { act: 'keep', why: 'app' });
  assert.equal(h.events.length, 1);
  // The incident ends after a quiet minute: the next malfunction is judged afresh.
  h.clock.advance(61_000);
  assert.equal(h.triage.incident('shop'), null);
  assert.equal((await h.triage.triage(input('h2', two.w, probe))).act, 'fail-over');
});

test("failed GETs are sent again to the primary and to the readers: succeeding on a reader makes them the host's", async () => {
  const h = harness({ others: [{ host: 'h3', endpoint: 'h3:3000' }], replay: (endpoint) => ({ status: endpoint.startsWith('h3') ? 200 : 500 }) });
  const { w, found } = watched(h.clock, 'h1', [
    { ms: 4000, kinds: { 'GET /api/orders/:id': [8, 8, ['/api/orders/4', '/api/orders/5']], 'GET /api/products': [2, 0] } },
  ]);
  const v = await h.triage.triage(input('h1', w, found[0]!));
  assert.equal(v.act, 'fail-over');
  assert.deepEqual(h.replays.sort(), ['h1:3000/api/orders/4', 'h1:3000/api/orders/5', 'h3:3000/api/orders/4', 'h3:3000/api/orders/5']);
  if (v.act === 'fail-over') assert.match(v.detection.reason, /\/api\/orders\/4 fails again on h1 \(status 500\) but succeeds on h3 \(200\)/);
});

test("a malfunction found by the probe is the host's (the probe fails): acted on at once", async () => {
  const h = harness();
  const { w } = watched(h.clock, 'h1', []);
  const d: Detection = { source: 'probe', failure: 'malfunction', reason: 'malfunction: status 500', detectedAt: 1, lastHealthyAt: 0, data: {} };
  assert.deepEqual(await h.triage.triage(input('h1', w, d)), { act: 'fail-over', detection: d });
  assert.deepEqual(h.events, []);
});
