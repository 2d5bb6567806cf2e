import { http, sleep } from './cluster.ts';

export interface AckedOrder {
  id: number;
  customer: string;
  ackAt: number;
  servedBy: string | null;
}

export interface LoadResult {
  acked: AckedOrder[];
  postsFailed: { at: number; status: number | string }[];
  getsOk: number;
  getsFailed: { at: number; status: number | string }[];
  answers: { at: number; servedBy: string | null; ok: boolean }[];
}

/**
 * A steady, bounded load of orders and reads through the director: `workers`
 * loops, each alternating a POST /api/orders with a GET /api/products, until
 * `stop()` is called or `maxMs` / `maxRequests` is reached.
 */
export function startLoad(front: string, opts: { workers?: number; maxMs?: number; maxRequests?: number; tag?: string } = {}) {
  const result: LoadResult = { acked: [], postsFailed: [], getsOk: 0, getsFailed: [], answers: [] };
  const deadline = Date.now() + (opts.maxMs ?? 60_000);
  const maxRequests = opts.maxRequests ?? 50_000;
  let sent = 0;
  let stopped = false;
  const tag = opts.tag ?? `load-${process.pid}-${Date.now()}`;
  const worker = async (w: number) => {
    let i = 0;
    while (!stopped && Date.now() < deadline && sent < maxRequests) {
      sent += 2;
      const customer = `${tag}-${w}-${i++}`;
      try {
        const r = await http(`${front}/api/orders`, { method: 'POST', body: { customer, items: [{ productId: 1, qty: 1 }] }, timeoutMs: 15_000 });
        result.answers.push({ at: r.at, servedBy: r.servedBy, ok: r.status === 201 });
        if (r.status === 201) result.acked.push({ id: (r.body as { id: number }).id, customer, ackAt: r.at, servedBy: r.servedBy });
        else result.postsFailed.push({ at: r.at, status: r.status });
      } catch (e) {
        result.postsFailed.push({ at: Date.now(), status: (e as Error).message });
      }
      try {
        const r = await http(`${front}/api/products`, { timeoutMs: 15_000 });
        result.answers.push({ at: r.at, servedBy: r.servedBy, ok: r.status === 200 });
        if (r.status === 200) result.getsOk++;
        else result.getsFailed.push({ at: r.at, status: r.status });
      } catch (e) {
        result.getsFailed.push({ at: Date.now(), status: (e as Error).message });
      }
      await sleep(5);
    }
  };
  const done = Promise.all(Array.from({ length: opts.workers ?? 4 }, (_, w) => worker(w)));
  return {
    result,
    stop: async () => {
      stopped = true;
      await done;
      return result;
    },
  };
}

/** Orders acknowledged (201) but absent now: looked up by their unique customer, not by id (ids can be reused after a loss). */
export async function missingOrders(front: string, acked: AckedOrder[]): Promise<AckedOrder[]> {
  const missing: AckedOrder[] = [];
  for (let i = 0; i < acked.length; i += 16) {
    const batch = acked.slice(i, i + 16);
    await Promise.all(
      batch.map(async (o) => {
        const r = await http(`${front}/api/orders?customer=${encodeURIComponent(o.customer)}`);
        const list = Array.isArray(r.body) ? r.body : ((r.body as { orders?: unknown[] }).orders ?? []);
        if (r.status !== 200 || list.length === 0) missing.push(o);
      }),
    );
  }
  return missing;
}
