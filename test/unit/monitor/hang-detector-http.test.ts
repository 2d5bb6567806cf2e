import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HangDetector, isFailureDecision, type HangDecision } from '../../../src/monitor/hang-detector.ts';
import { HttpProbe } from '../../../src/monitor/http-probe.ts';

const EVERY_MS = 200;
const TIMEOUT_MS = 300;
const FALL = 2;

/**
 * A real app that can be made to hang the way a SIGSTOPped one does: it accepts the
 * connection (the kernel would, from the backlog) and never answers.
 */
async function app(): Promise<{ url: string; setMode: (m: 'ok' | 'hang') => void; close: () => Promise<void> }> {
  let mode: 'ok' | 'hang' = 'ok';
  const srv = http.createServer((_req, res) => {
    if (mode === 'hang') return; // never answers
    res.end('up');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/healthz`,
    setMode: (m) => {
      mode = m;
    },
    close: () =>
      new Promise((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

/** Probes every EVERY_MS (as SiteMonitor does) until the detector decides or `limitMs` passes. */
async function probeUntilDecision(probe: HttpProbe, d: HangDetector, processAlive: boolean, limitMs: number): Promise<HangDecision | null> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    const r = await probe.run();
    const decision = d.observeProbe(r, processAlive);
    if (decision) return decision;
    await new Promise((res) => setTimeout(res, Math.max(0, EVERY_MS - r.latencyMs)));
  }
  return null;
}

test('an app that stops answering (SIGSTOP-like) is classified `hang` through real HttpProbe results within ~1 s', async (t) => {
  const a = await app();
  t.after(() => a.close());
  const probe = new HttpProbe(a.url, TIMEOUT_MS);
  t.after(() => probe.close());
  const d = new HangDetector({ fall: FALL, rise: 2 });

  const first = await probe.run();
  assert.equal(first.ok, true);
  assert.equal(first.status, 200);
  assert.equal(d.observeProbe(first, true), null);

  a.setMode('hang');
  const stoppedAt = Date.now();
  const decision = await probeUntilDecision(probe, d, true, 3000);
  const tookMs = Date.now() - stoppedAt;
  assert.ok(isFailureDecision(decision), 'a failure decision');
  assert.equal(decision.kind, 'hang');
  assert.deepEqual(
    decision.evidence.probes.map((p) => p.error),
    ['timeout', 'timeout'],
  );
  assert.ok(tookMs < 1000, `classified in ${tookMs} ms`);

  // It answers again (SIGCONT): recovered after rise good probes.
  a.setMode('ok');
  const back = await probeUntilDecision(probe, d, true, 3000);
  assert.equal(back?.kind, 'recovered');
});

test('an app whose port refuses connections is classified `crash`', async (t) => {
  const a = await app();
  const probe = new HttpProbe(a.url, TIMEOUT_MS);
  t.after(() => probe.close());
  const d = new HangDetector({ fall: FALL, rise: 2 });
  assert.equal(d.observeProbe(await probe.run(), true), null);
  await a.close();
  const decision = await probeUntilDecision(probe, d, true, 3000);
  assert.ok(isFailureDecision(decision), 'a failure decision');
  assert.equal(decision.kind, 'crash');
  assert.deepEqual(
    decision.evidence.probes.map((p) => p.error),
    ['refused', 'refused'],
  );
});
