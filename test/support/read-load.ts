import { Agent, request } from 'undici';
import { background } from '../../src/shared/background.ts';

/** One request of a read-heavy load: method, when it ended, how long it took, who answered. */
export interface Sample {
  method: 'GET' | 'POST';
  path: string;
  startedAt: number;
  at: number;
  ms: number;
  status: number | string;
  servedBy: string | null;
}

/**
 * A bounded, read-heavy, open-loop load through the director: requests start at a
 * fixed rate (`rate` per second) whatever the answers do, as real users arrive — so a
 * stalled host makes every request that arrives during the stall wait, and the p95
 * shows it (a closed loop of a few workers would hide it: they all wait, and
 * nothing new arrives). Every `readsPerWrite + 1`-th request is a POST /api/orders,
 * the others GETs cycling through `paths`. At most `maxInflight` at once (beyond that a
 * start is skipped and counted), until `stop()` or `maxMs`.
 */
export function startReadLoad(front: string, opts: { rate?: number; readsPerWrite?: number; maxMs?: number; maxInflight?: number; paths?: string[] } = {}) {
  const samples: Sample[] = [];
  const rate = opts.rate ?? 200;
  const deadline = Date.now() + (opts.maxMs ?? 60_000);
  const paths = opts.paths ?? ['/api/products', '/', '/api/products/3', '/public/shop.css'];
  const rpw = opts.readsPerWrite ?? 4;
  const maxInflight = opts.maxInflight ?? 400;
  const dispatcher = new Agent({ connections: maxInflight, keepAliveTimeout: 10_000 });
  let inflight = 0;
  let n = 0;
  let skipped = 0;
  const pending = new Set<Promise<void>>();
  const one = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<void> => {
    const startedAt = Date.now();
    const t0 = performance.now();
    try {
      const res = await request(`${front}${path}`, {
        dispatcher,
        method,
        headersTimeout: 15_000,
        bodyTimeout: 15_000,
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      });
      await res.body.text();
      const sb = res.headers['x-served-by'];
      samples.push({
        method,
        path,
        startedAt,
        at: Date.now(),
        ms: performance.now() - t0,
        status: res.statusCode,
        servedBy: typeof sb === 'string' ? sb : null,
      });
    } catch (e) {
      samples.push({ method, path, startedAt, at: Date.now(), ms: performance.now() - t0, status: (e as Error).message, servedBy: null });
    }
  };
  const started = performance.now();
  const tick = (): void => {
    // Catch up with the schedule: as many starts as the rate says by now.
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (n < due) {
      const i = n++;
      if (inflight >= maxInflight) {
        skipped++;
        continue;
      }
      inflight++;
      const p = (
        i % (rpw + 1) === rpw
          ? one('POST', '/api/orders', { customer: `read-load-${i}`, items: [{ productId: 1 + (i % 5), qty: 1 }] })
          : one('GET', paths[i % paths.length]!)
      ).finally(() => {
        inflight--;
        pending.delete(p);
      });
      pending.add(p);
    }
    if (Date.now() >= deadline) background(stop());
  };
  const timer = setInterval(tick, 5);
  let stopping: Promise<Sample[]> | null = null;
  const stop = (): Promise<Sample[]> => {
    stopping ??= (async () => {
      clearInterval(timer);
      await Promise.all([...pending]);
      await dispatcher.close();
      return samples;
    })();
    return stopping;
  };
  return {
    samples,
    get skipped() {
      return skipped;
    },
    stop,
  };
}

export function p95(values: number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)]!;
}
