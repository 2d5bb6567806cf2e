import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { waitUntil } from '../support/cluster.ts';
import { frontBack } from '../support/front-probe.ts';
import { rigGet, startRigCluster, waitRigServing, type RigCluster } from '../support/rig-cluster.ts';

interface Answer {
  /** When the request was sent, and when it ended. */
  sentAt: number;
  at: number;
  /** ok: an answer; refused: the connection was never made (nothing was sent: retried); lost: sent, then no answer. */
  outcome: 'ok' | 'refused' | 'lost';
  status: number | null;
  servedBy: string | null;
  error?: string;
}

/**
 * A bounded read load on the front: `workers` loops of GET /api/products, each on a
 * keep-alive connection. A connection that could not be made is counted as refused
 * (nothing was sent: a client sends it again); a request sent that gets no answer is
 * lost.
 */
function frontLoad(front: string, workers: number, maxMs: number): { answers: Answer[]; stop: () => Promise<void> } {
  const answers: Answer[] = [];
  const dispatcher = new Agent({ keepAliveTimeout: 10_000, connect: { timeout: 1000 } });
  const until = Date.now() + maxMs;
  let stopped = false;
  const loops = Array.from({ length: workers }, async () => {
    for (let n = 0; n < 50_000 && !stopped && Date.now() < until; n++) {
      const sentAt = Date.now();
      try {
        const res = await request(`${front}/api/products`, { dispatcher, headersTimeout: 3000, bodyTimeout: 3000 });
        await res.body.text();
        const sb = res.headers['x-served-by'];
        answers.push({ sentAt, at: Date.now(), outcome: 'ok', status: res.statusCode, servedBy: typeof sb === 'string' ? sb : null });
      } catch (e) {
        const code = (e as { code?: string }).code ?? '';
        const refused = code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'EHOSTUNREACH';
        answers.push({ sentAt, at: Date.now(), outcome: refused ? 'refused' : 'lost', status: null, servedBy: null, error: code || (e as Error).message });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  let closing: Promise<void> | null = null;
  return {
    answers,
    stop: () => {
      stopped = true;
      closing ??= Promise.all(loops).then(() => dispatcher.close());
      return closing;
    },
  };
}

async function routeOf(c: RigCluster, director: string): Promise<{ epoch: number; primary: string | null } | null> {
  const { routes } = await rigGet<{ routes: { site: string; epoch: number; primary: string | null }[] }>(`http://${c.rig.address(director)}:7071/v1/routes`);
  return routes.find((r) => r.site === 'shop') ?? null;
}

/**
 * Two directors on their own machines share the site's front: a floating address on
 * their LAN, moved by VRRP (keepalived), held only by a director that has every
 * route. The one holding it is SIGKILLed under load: the front answers again from the
 * other; the only requests lost are those that were in flight on the dead one. While
 * it is down the site moves to h2 (epoch 2); started again, it gets the routes of
 * epoch 2 before it may take the front, and when the other dies in turn it serves the
 * site at epoch 2 only.
 */
test(
  'two directors: the active one SIGKILLed under load, the front answers again from the other; only requests in flight are lost; one that comes back serves only at the current epoch',
  { timeout: 150_000 },
  async (t) => {
    const c = await startRigCluster({ replication: 'async', directors: ['da', 'db'] });
    t.after(() => c.stop());
    await waitRigServing(c, 'h1');
    await waitUntil('a director holds the front', async () => c.frontHolder() !== null, 15_000, 100);
    const first = c.frontHolder()!;
    const other = c.directors.find((d) => d !== first)!;
    for (const d of c.directors) assert.equal((await routeOf(c, d))?.epoch, 1, `${d} has the route at epoch 1`);

    const load = frontLoad(c.front, 4, 60_000);
    t.after(() => load.stop());
    await waitUntil('answers through the front', async () => load.answers.filter((a) => a.outcome === 'ok').length >= 50, 15_000);

    await c.killPart(`director-${first}`);
    const killedAt = Date.now();
    const backMs = await frontBack(`${c.front}/api/products`, killedAt);
    await waitUntil('the load is answered again', async () => load.answers.some((a) => a.outcome === 'ok' && a.sentAt > killedAt), 10_000, 20);
    const loadBackMs = Math.min(...load.answers.filter((a) => a.outcome === 'ok' && a.sentAt > killedAt).map((a) => a.at)) - killedAt;
    assert.equal(c.frontHolder(), other, 'the other director holds the front now');
    await new Promise((r) => setTimeout(r, 500));

    const lost = load.answers.filter((a) => a.outcome === 'lost');
    const refused = load.answers.filter((a) => a.outcome === 'refused');
    t.diagnostic(
      `front back ${backMs} ms after the kill (the load's first answer after ${loadBackMs} ms); lost ${lost.length} (${lost.map((a) => a.error).join(', ')}); refused before the move ${refused.length}`,
    );
    assert.ok(backMs < 3000, `the front answered again within 3 s (${backMs} ms)`);
    assert.ok(lost.length <= 4, 'at most one request per connection lost: those in flight');
    for (const a of lost) assert.ok(a.sentAt <= killedAt, `a lost request was in flight when the director died (sent ${killedAt - a.sentAt} ms before)`);
    assert.ok(
      load.answers.filter((a) => a.outcome === 'ok').every((a) => a.status === 200 && a.servedBy?.startsWith(`${c.hostAddress('h1')}:`)),
      'every answer came from h1, the primary',
    );

    // While `first` is down the site moves to h2 (epoch 2).
    const fo = await c.call('/v1/sites/shop/failover', { method: 'POST', body: { to: 'h2' } });
    assert.equal(fo.status, 200, JSON.stringify(fo.body));
    await waitRigServing(c, 'h2');
    const movedAt = Date.now();
    await waitUntil(
      'answers from h2',
      async () => load.answers.some((a) => a.outcome === 'ok' && a.sentAt > movedAt && a.servedBy?.startsWith(`${c.hostAddress('h2')}:`)),
      15_000,
    );

    // `first` comes back: it gets epoch 2's route from the controller, and does not take the front from `other`.
    c.startPart(`director-${first}`);
    await waitUntil(`${first} has the current route`, async () => (await routeOf(c, first).catch(() => null))?.epoch === 2, 15_000, 100);
    assert.equal((await routeOf(c, first))?.primary?.startsWith(`${c.hostAddress('h2')}:`), true);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(c.frontHolder(), other, 'a director that comes back does not take the front from one serving it');

    // `other` dies in turn: `first` serves, at epoch 2 (h2) only.
    await c.killPart(`director-${other}`);
    const secondKillAt = Date.now();
    const backMs2 = await frontBack(`${c.front}/api/products`, secondKillAt);
    await waitUntil(
      'the front answers again from the restarted director',
      async () => load.answers.some((a) => a.outcome === 'ok' && a.sentAt > secondKillAt),
      10_000,
      20,
    );
    assert.equal(c.frontHolder(), first);
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();
    const after = load.answers.filter((a) => a.outcome === 'ok' && a.sentAt > secondKillAt);
    assert.ok(after.length > 0);
    assert.ok(
      after.every((a) => a.servedBy?.startsWith(`${c.hostAddress('h2')}:`)),
      'after the second move every answer came from h2: nothing routed at epoch 1',
    );
    t.diagnostic(`second move: front back ${backMs2} ms after the kill`);
    const lost2 = load.answers.filter((a) => a.outcome === 'lost' && a.sentAt > secondKillAt - 5000);
    for (const a of lost2) assert.ok(a.sentAt <= secondKillAt, 'a lost request was in flight when the director died');
  },
);
