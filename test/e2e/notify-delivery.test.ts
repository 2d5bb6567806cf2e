import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { http as get, ports, sleep, startCluster, waitUntil } from '../support/cluster.ts';
import { apiCall, demoLikeConfig, type DemoStatus } from '../support/demo-like.ts';
import { parseMetrics, samples } from '../support/prometheus.ts';
import type { Ev } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * Notifications that arrive: a webhook receiver (a real HTTP server on loopback) is
 * down for 10 s; meanwhile shop's primary is SIGKILLed (a failover) and then the
 * controller itself is SIGKILLed and restarted by `up`. Once the receiver is back it
 * gets every event of the log, in order, with its secret header; the failing
 * deliveries raised a `notify-failing` event and show in /metrics. The failover was
 * not delayed by the dead receiver, and nothing else moved.
 */

const SLOT = claimSlot();
const SECRET = 'hook-secret-5c1d';

interface Got {
  id: number;
  kind: string;
  message: string;
  auth: string | undefined;
  at: number;
}

function receiver(port: number, got: Got[]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      const e = JSON.parse(body) as { id: number; kind: string; message: string };
      got.push({ id: e.id, kind: e.kind, message: e.message, auth: req.headers.authorization, at: Date.now() });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

function close(server: http.Server): Promise<void> {
  return new Promise((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
}

test('a webhook receiver down for 10 s gets every event once back, across a failover and a controller SIGKILL', { timeout: 90_000 }, async (t) => {
  const hookPort = ports(SLOT).front + 50;
  const extra = {
    notify: {
      hook: {
        webhook: { url: `http://127.0.0.1:${hookPort}/understudy`, headers: { Authorization: { env: 'HOOK_AUTH' } }, timeout: '1s' },
        retry: { min: '200ms', max: '1s', alertAfter: 3 },
      },
    },
  };
  const got: Got[] = [];
  let rx: http.Server | null = await receiver(hookPort, got);
  t.after(async () => {
    if (rx) await close(rx);
  });
  const cluster = await startCluster({ slot: SLOT, env: { HOOK_AUTH: `Bearer ${SECRET}` }, config: (ctx) => demoLikeConfig(ctx, { extra }) });
  t.after(() => cluster.stop());
  const call = async <T>(p: string) => (await apiCall<T>(cluster.api, null, p)).body;
  const events = async () => (await call<{ events: Ev[] }>('/v1/events?limit=5000')).events;

  const before = await waitUntil(
    'both sites serving and streaming',
    async () => {
      const st = await call<DemoStatus>('/v1/status');
      return st.sites.every((s) => s.state === 'serving' && s.replication.state === 'streaming') ? st : null;
    },
    60_000,
    100,
  );
  await waitUntil('the receiver to get the start events', async () => got.filter((g) => g.kind === 'site-started').length === 2, 10_000, 50);
  assert.equal(got[0]!.auth, `Bearer ${SECRET}`, 'the secret header from the environment');

  // The receiver goes down for 10 s.
  await close(rx);
  rx = null;
  const downAt = Date.now();
  const receivedBeforeDown = got.length;

  // A failover while it is down.
  const h1 = before.hosts.find((h) => h.name === 'h1')!;
  process.kill(-h1.pid!, 'SIGKILL');
  const failover = await waitUntil('the failover to complete', async () => (await events()).find((e) => e.kind === 'failover-complete'), 20_000, 50);
  // Then the controller dies too, and `up` restarts it.
  const { pid: controllerPid } = await call<{ pid: number }>('/healthz');
  const pending = await waitUntil(
    'queued notifications',
    async () => {
      const n = (await call<{ targets: { target: string; pending: number }[] }>('/v1/notify')).targets[0];
      return n && n.pending >= 5 ? n : null;
    },
    5000,
    50,
  );
  process.kill(controllerPid, 'SIGKILL');
  await waitUntil('a new controller', async () => (await call<{ pid: number }>('/healthz')).pid !== controllerPid, 20_000, 100);
  await waitUntil(
    'notify-failing raised (deliveries keep failing)',
    async () => (await events()).some((e) => e.kind === 'notify-failing' && e.data.target === 'hook'),
    15_000,
    100,
  );
  assert.equal(got.length, receivedBeforeDown, 'nothing was received while the receiver was down (the fault was real)');

  // Back after 10 s.
  await sleep(Math.max(0, downAt + 10_000 - Date.now()));
  rx = await receiver(hookPort, got);
  const upAt = Date.now();
  const all = await waitUntil(
    'every event delivered',
    async () => {
      const log = (await events()).filter((e) => !(e.kind.startsWith('notify-') && e.data.target === 'hook'));
      const ids = new Set(got.map((g) => g.id));
      return log.length > 0 && log.every((e) => ids.has(e.id)) ? log : null;
    },
    20_000,
    100,
  );
  const deliveredAfterMs = Math.max(...got.filter((g) => g.at >= upAt).map((g) => g.at)) - upAt;

  // Every event, with its content, in order of first receipt; duplicates only of ones that were in flight.
  const byId = new Map(all.map((e) => [e.id, e]));
  const firstSeen: number[] = [];
  for (const g of got) {
    if (!firstSeen.includes(g.id)) firstSeen.push(g.id);
    const e = byId.get(g.id);
    if (e) {
      assert.equal(g.kind, e.kind);
      assert.equal(g.message, e.message);
    }
    assert.equal(g.auth, `Bearer ${SECRET}`);
  }
  assert.deepEqual(
    firstSeen.filter((id) => byId.has(id)),
    all.map((e) => e.id),
    'each event received, in the order of the log',
  );
  const duplicates = got.length - firstSeen.length;
  for (const kind of ['promoted', 'failover-complete'])
    assert.ok(
      got.some((g) => g.kind === kind && g.at >= upAt),
      `${kind} was delivered once the receiver was back`,
    );

  // The dead receiver delayed nothing: the failover's figures are those of a failover.
  assert.ok((failover.data.servingAgainMs as number) < 10_000, `serving again ${String(failover.data.servingAgainMs)} ms after detection`);
  const st = await call<DemoStatus>('/v1/status');
  const shop = st.sites.find((s) => s.name === 'shop')!;
  const outlet = st.sites.find((s) => s.name === 'outlet')!;
  assert.equal(shop.epoch, before.sites.find((s) => s.name === 'shop')!.epoch + 1, 'one failover of shop');
  assert.equal(outlet.epoch, before.sites.find((s) => s.name === 'outlet')!.epoch, 'the outlet did not move');
  const { runbooks } = await call<{ runbooks: { kind: string }[] }>('/v1/runbooks');
  assert.equal(runbooks.filter((r) => r.kind === 'failover').length, 1);

  // The failures are a metric too, and the queue is empty now.
  await waitUntil('queue drained', async () => (await call<{ targets: { pending: number }[] }>('/v1/notify')).targets[0]!.pending === 0, 5000, 100);
  const metrics = parseMetrics(String((await get(`${cluster.api}/metrics`)).body));
  const deliveries = (outcome: string) => Number(samples(metrics, 'understudy_notify_deliveries_total', { target: 'hook', outcome })[0]?.value ?? 0);
  assert.ok(deliveries('failed') > 0, 'failed attempts counted by the new controller');
  assert.ok(deliveries('delivered') > 0);
  assert.equal(Number(samples(metrics, 'understudy_notify_pending', { target: 'hook' })[0]?.value), 0);
  assert.equal(Number(samples(metrics, 'understudy_notify_failing', { target: 'hook' })[0]?.value), 0);

  // The secret never reached a log.
  const logs = path.join(cluster.dir, 'state', 'logs');
  for (const f of fs.readdirSync(logs)) assert.ok(!fs.readFileSync(path.join(logs, f), 'utf8').includes(SECRET), `${f} does not contain the secret`);
  assert.ok(!cluster.output().includes(SECRET));
  t.diagnostic(
    `${all.length} events, ${pending.pending}+ queued while down; all delivered ${deliveredAfterMs} ms after the receiver came back; ${duplicates} duplicate(s)`,
  );
});
