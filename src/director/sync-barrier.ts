import { Pool } from 'undici';
import type { RouteTable, SyncBarrierResponse } from '../shared/contracts.ts';
import { internalConnectOptions, internalHeaders, internalUrl } from '../shared/cluster-dispatcher.ts';
import { background } from '../shared/background.ts';

/**
 * The director's side of sync mode: asks the storage processor holding a site's
 * primary volume whether everything committed so far is on the replica's disk
 * (POST {storageUrl}/v1/volumes/:site/sync-barrier, see contracts.ts).
 *
 * Cheap on purpose: one keep-alive undici Pool per storage processor (no connect per
 * write), a tiny JSON body, no retries, and group commit on this side too: the answers
 * that arrive in one turn of the event loop share one barrier call, sent right after
 * that turn (setImmediate). That call reaches the storage processor after every one of
 * those answers had fully arrived, so it covers each of them exactly as a call of its
 * own would (docs/architecture.md, "Sync mode: the barrier"). Never hangs: the call is bounded by the
 * route's timeoutMs plus a margin (the storage processor answers by timeoutMs itself;
 * the margin only matters when it is wedged). Any failure is `unreachable`, which the
 * proxy treats as "not confirmed" (strict: 503; degrade: released and counted).
 */
export type SyncRoute = NonNullable<RouteTable['sync']>;

export interface BarrierResult {
  outcome: SyncBarrierResponse['state'] | 'unreachable';
  /** Why it was not confirmed (for the client's 503 and the logs). */
  reason?: string;
}

/** Extra time granted beyond timeoutMs before the storage processor counts as wedged. */
const MARGIN_MS = 1000;

export class SyncBarrierClient {
  private readonly pools = new Map<string, Pool>();
  /** Barriers waiting for the call of this event-loop turn, by site and route settings. */
  private readonly batches = new Map<string, ((r: BarrierResult) => void)[]>();
  /** Barriers asked for, and calls made (a call serves one or more barriers). */
  readonly counts = { barriers: 0, calls: 0 };

  /** Resolves with the storage processor's answer for everything committed before the call. */
  barrier(site: string, sync: SyncRoute): Promise<BarrierResult> {
    this.counts.barriers++;
    const key = `${sync.storageUrl}\n${site}\n${sync.onReplicaLost}\n${sync.timeoutMs}`;
    let waiters = this.batches.get(key);
    if (waiters === undefined) {
      const batch: ((r: BarrierResult) => void)[] = [];
      waiters = batch;
      this.batches.set(key, batch);
      setImmediate(() => {
        this.batches.delete(key);
        this.counts.calls++;
        background(
          this.call(site, sync).then((r) => {
            for (const w of batch) w(r);
          }),
        ); // call() never rejects
      });
    }
    const list = waiters;
    return new Promise((resolve) => list.push(resolve));
  }

  /**
   * One barrier call; never rejects. Through `dispatch` with its own small handler, not
   * `request()`: it is made for every sync write, and a response stream per call cost
   * more than the rest of it.
   */
  private call(site: string, sync: SyncRoute): Promise<BarrierResult> {
    const budget = sync.timeoutMs + MARGIN_MS;
    const url = sync.storageUrl;
    return new Promise<BarrierResult>((resolve) => {
      let status = 0;
      const chunks: Buffer[] = [];
      const failed = (err: unknown): void => {
        const e = err as NodeJS.ErrnoException;
        resolve({ outcome: 'unreachable', reason: `cannot reach storage processor ${url}: ${e.code ?? e.message}` });
      };
      try {
        this.pool(url).dispatch(
          {
            path: `/v1/volumes/${encodeURIComponent(site)}/sync-barrier`,
            method: 'POST',
            headers: { 'content-type': 'application/json', ...internalHeaders() },
            body: JSON.stringify({ onReplicaLost: sync.onReplicaLost, timeoutMs: sync.timeoutMs }),
            headersTimeout: budget,
            bodyTimeout: budget,
          },
          {
            onRequestStart() {},
            onResponseStart(_c, statusCode) {
              status = statusCode;
            },
            onResponseData(_c, chunk) {
              chunks.push(chunk);
            },
            onResponseEnd() {
              resolve(barrierAnswer(url, status, Buffer.concat(chunks).toString('utf8')));
            },
            onResponseError(_c, err) {
              failed(err);
            },
          },
        );
      } catch (e) {
        failed(e);
      }
    });
  }

  /** Closes the pools of storage processors no route names any more. */
  retain(urls: ReadonlySet<string>): void {
    for (const [url, p] of this.pools) {
      if (urls.has(url)) continue;
      this.pools.delete(url);
      p.close().catch(() => {
        /* already closed */
      });
    }
  }

  async destroyAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(all.map((p) => p.destroy()));
  }

  private pool(url: string): Pool {
    let p = this.pools.get(url);
    if (p === undefined) {
      p = new Pool(internalUrl(url), { connections: 64, pipelining: 1, keepAliveTimeout: 30_000, connect: { timeout: 1000, ...internalConnectOptions() } });
      this.pools.set(url, p);
    }
    return p;
  }
}

/** What a storage processor's answer to a barrier call says. */
function barrierAnswer(url: string, status: number, text: string): BarrierResult {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (status !== 200) {
    const msg = (body as { error?: { message?: string } } | undefined)?.error?.message ?? `answered ${status}`;
    return { outcome: 'unreachable', reason: `storage processor ${url}: ${msg}` };
  }
  const r = body as SyncBarrierResponse | undefined;
  if (r?.state !== 'sync' && r?.state !== 'degraded' && r?.state !== 'timeout') {
    return { outcome: 'unreachable', reason: `storage processor ${url} gave no barrier state` };
  }
  return r.reason !== undefined ? { outcome: r.state, reason: r.reason } : { outcome: r.state };
}
