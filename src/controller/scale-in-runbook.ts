import type { UnderstudyError } from '../shared/errors.ts';
import { JournaledRunbook } from './journaled-runbook.ts';
import { readerEndpoint } from './reader-facts.ts';
import { takeDownReader, type ScaleDeps } from './scale-out-runbook.ts';
import { sleep } from './timing.ts';

/** What a scale-in runbook is given; persisted with the runbook. */
export interface ScaleInData extends Record<string, unknown> {
  host: string;
  epoch: number;
  primary: string;
  reason: string;
  /** `low-load`: given back after the stabilization window; `reader-failed`; `stale-epoch`: the primary moved. */
  cause: 'low-load' | 'reader-failed' | 'stale-epoch' | 'operator';
  evidence: Record<string, unknown>;
}

/** How long requests in flight on the reader may take to finish once it is out of the route. */
const DRAIN_TIMEOUT_MS = 10_000;

/**
 * Scale-in: gives one reader back. Out of the route's readers first (new
 * reads go elsewhere), then the reads in flight on it finish (the director's
 * `inflight` of that upstream reaches 0, bounded), then the app is stopped, the host
 * powered off, the primary's storage stops feeding the copy and the copy is dropped.
 * Also how a failed reader is removed (no failover: a reader holds nothing that is
 * not on the primary) and how readers of an old epoch go after a change of primary.
 */
export class ScaleInRunbook extends JournaledRunbook<ScaleInData, ScaleDeps> {
  async run(): Promise<void> {
    const { store, clients, config, readerSet: readers } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = this.journal.step.bind(this.journal);
    const cfg = config.sites[site]!;
    const upstream = readerEndpoint(config, d.host, cfg);
    const started = Date.now();
    try {
      await step('unroute', async () => {
        const rec = readers.of(site).find((r) => r.host === d.host);
        if (rec) await readers.put(site, { ...rec, state: 'removing' });
        await this.deps.pushRoute(site);
      });
      let drained = true;
      await step('drain', async () => {
        if (d.cause === 'reader-failed') return { skipped: 'the reader failed' };
        const deadline = Date.now() + DRAIN_TIMEOUT_MS;
        while (true) {
          const stats = await clients.stats().catch(() => null);
          const u = stats?.sites.find((x) => x.site === site)?.upstreams.find((x) => x.upstream === upstream);
          if (stats && (!u || u.inflight === 0)) return { inflight: 0 };
          if (Date.now() > deadline) {
            drained = false;
            return { inflight: u?.inflight ?? null, timedOut: true };
          }
          await sleep(20);
        }
      });
      await step('take-down', () => takeDownReader(this.deps, site, d.host, d.epoch, d.primary));
      store.addEvent({
        site,
        host: d.host,
        kind: 'scale-in-complete',
        message: `${site}: reader ${d.host} given back (${d.reason}): out of the route, ${drained ? 'drained' : 'drain timed out'}, app stopped, powered off, copy dropped in ${Date.now() - started} ms`,
        data: {
          runbook: this.rb.id,
          host: d.host,
          cause: d.cause,
          reason: d.reason,
          evidence: d.evidence,
          ms: Date.now() - started,
          hosts: 1 + readers.of(site).filter((r) => r.state === 'serving').length,
        },
      });
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      store.finishRunbook(this.rb.id, 'failed');
      store.addEvent({
        site,
        host: d.host,
        kind: 'scale-in-failed',
        message: `${site}: giving back reader ${d.host} failed (${err.message}); it is forced down`,
        data: { runbook: this.rb.id, code: err.code ?? 'US_INTERNAL' },
      });
      await takeDownReader(this.deps, site, d.host, d.epoch, d.primary);
      throw e;
    }
  }
}
