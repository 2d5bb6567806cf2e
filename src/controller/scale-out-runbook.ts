import { JournaledRunbook } from './journaled-runbook.ts';
import type { UnderstudyError } from '../shared/errors.ts';
import type { ReaderClients } from './reader-clients.ts';
import { readerEndpoint, readerStartRequest } from './reader-facts.ts';
import type { ReaderSet } from './reader-set.ts';
import type { RunbookDeps } from './runbook-journal.ts';
import { renderedTransform } from './site-facts.ts';
import { waitSiteStarted } from './app-start-watch.ts';
import { waitFor } from './timing.ts';

/** What the scale runbooks need beyond the other runbooks' parts. */
export interface ScaleDeps extends RunbookDeps {
  readerSet: ReaderSet;
  readerClients: ReaderClients;
  /** Pushes the site's route with its current serving readers. */
  pushRoute: (site: string) => Promise<void>;
}

/** What a scale-out runbook is given and decides; persisted with the runbook. */
export interface ScaleOutData extends Record<string, unknown> {
  host: string;
  epoch: number;
  /** The primary host when it started (its storage feeds the reader copy). */
  primary: string;
  reason: string;
  evidence: Record<string, unknown>;
  /** When the slowdown was detected (epoch ms). */
  detectedAt: number;
  /** When the reader was routed (serving). */
  routedAt?: number;
}

/** How long a reader copy may take to catch up before the reader starts. */
const CATCH_UP_TIMEOUT_MS = 30_000;

/**
 * Scale-out: adds one reader host to a slow site. Power
 * it on (relay), have the primary's storage give its storage a copy of the site's
 * read-only portion (reader-shipping.ts), fit the copy's config to the host, wait
 * until the copy serves everything committed so far, start the app read-only on it,
 * wait until it answers its probe, then add it to the route's readers. Journaled step
 * by step like the other runbooks; every step is idempotent (power on of a powered
 * host, a shipping request for a destination already fed, a start at the epoch it
 * already runs, a route at the same epoch).
 *
 * It never touches the primary, fences nothing and moves no write. If it fails,
 * what it set up is taken down again (app stopped, host powered off, copy dropped)
 * and the site goes on as it was.
 */
export class ScaleOutRunbook extends JournaledRunbook<ScaleOutData, ScaleDeps> {
  async run(): Promise<void> {
    const { store, relay, clients, config, readerSet: readers, readerClients } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = this.journal.step.bind(this.journal);
    const cfg = config.sites[site]!;
    const host = config.hosts[d.host]!;
    const primaryStorage = config.hosts[d.primary]!.storage;
    try {
      await step('reserve', () => readers.put(site, { host: d.host, epoch: d.epoch, state: 'adding', since: Date.now(), reason: d.reason }));
      await step('power-on', async () => {
        if (relay.status(d.host).power === 'off') {
          await relay.on(d.host);
          store.addEvent({ site, host: d.host, kind: 'power-on', message: `${d.host} powered on to serve reads of ${site}`, data: { runbook: this.rb.id } });
        }
        await waitFor(() => clients.agentStatus(d.host, 300), { timeoutMs: 15_000, everyMs: 20, what: `the agent of ${d.host}` });
      });
      await step('reader-copy', () => readerClients.startShipping(primaryStorage, site, d.epoch, host.storage));
      await step('catch-up', () => readerClients.catchUp(primaryStorage, site, host.storage, CATCH_UP_TIMEOUT_MS));
      await step('transform', async () => {
        const res = await readerClients.transform(host.storage, site, d.epoch, renderedTransform(host, cfg));
        return { changes: res.changes };
      });
      await step('start', () => clients.startApp(d.host, site, readerStartRequest(config, host, cfg, d.epoch)));
      await step('wait-healthy', () =>
        waitSiteStarted((h, t) => clients.agentStatus(h, t), host, cfg, readerStartRequest(config, host, cfg, d.epoch).command, 10),
      );
      await step('route', async () => {
        await readers.put(site, { host: d.host, epoch: d.epoch, state: 'serving', since: Date.now(), reason: d.reason });
        await this.deps.pushRoute(site);
        d.routedAt = Date.now();
      });
      const total = 1 + readers.of(site).filter((r) => r.state === 'serving').length;
      store.addEvent({
        site,
        host: d.host,
        kind: 'scale-out-complete',
        message: `${site}: ${d.host} serves reads (${readerEndpoint(config, d.host, cfg)}), ${d.routedAt! - d.detectedAt} ms after the slowdown was detected; ${total} of at most ${cfg.scale.max} hosts (${d.reason})`,
        data: {
          runbook: this.rb.id,
          host: d.host,
          epoch: d.epoch,
          reason: d.reason,
          evidence: d.evidence,
          detectedAt: d.detectedAt,
          servingAt: d.routedAt,
          servingAfterMs: d.routedAt! - d.detectedAt,
          hosts: total,
        },
      });
      store.finishRunbook(this.rb.id, 'done');
    } catch (e) {
      const err = e as UnderstudyError;
      store.finishRunbook(this.rb.id, 'failed');
      store.addEvent({
        site,
        host: d.host,
        kind: 'scale-out-failed',
        message: `${site}: adding reader ${d.host} failed (${err.message}); it is taken down again, the site goes on without it`,
        data: { runbook: this.rb.id, code: err.code ?? 'US_INTERNAL' },
      });
      await takeDownReader(this.deps, site, d.host, d.epoch, d.primary);
      throw e;
    }
  }
}

/**
 * Takes a reader down, each part best effort and idempotent: out of the route, app
 * stopped, host powered off, shipping stopped, copy dropped, forgotten. Used by
 * scale-in's last steps and when a scale-out fails.
 */
export async function takeDownReader(deps: ScaleDeps, site: string, host: string, epoch: number, primary: string): Promise<void> {
  const { config, clients, relay, readerSet: readers, readerClients } = deps;
  const h = config.hosts[host]!;
  await readers.remove(site, host);
  await deps.pushRoute(site).catch(() => undefined);
  await clients.stopApp(host, site).catch(() => undefined);
  if (relay.status(host).power !== 'off') {
    const off = await relay.off(host).then(
      () => true,
      () => false,
    );
    if (off) deps.store.addEvent({ site, host, kind: 'power-off', message: `${host} powered off: it no longer serves reads of ${site}`, data: {} });
  }
  await readerClients.stopShipping(config.hosts[primary]!.storage, site, h.storage).catch(() => undefined);
  await readerClients.drop(h.storage, site, epoch).catch(() => undefined);
}
