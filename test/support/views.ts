import assert from 'node:assert/strict';
import type { StatusView } from '../../src/controller/status-view.ts';
import type { EventRecord, RunbookView } from '../../src/state/state-store.ts';
import { api, waitUntil, type Cluster } from './cluster.ts';

/**
 * Test support: what the controller API answers, typed from the product's own
 * contracts, so that a renamed or retyped field breaks the tests' build instead of
 * passing as `undefined`.
 */
export type Status = StatusView;
export type Ev = EventRecord;
export type Runbook = RunbookView;

/** `GET /v1/status`. */
export function status(c: Cluster): Promise<Status> {
  return api<Status>(c, '/v1/status');
}

/** `GET /v1/events?after=N` (oldest first, at most 5000). */
export async function events(c: Cluster, after = 0): Promise<Ev[]> {
  return (await api<{ events: Ev[] }>(c, `/v1/events?after=${after}&limit=5000`)).events;
}

/** The first event `pred` accepts, within `timeoutMs`; on timeout the error lists the events there were. */
export async function waitEvent(c: Cluster, what: string, pred: (e: Ev) => boolean, timeoutMs: number, everyMs = 100): Promise<Ev> {
  let seen: Ev[] = [];
  return waitUntil(
    what,
    async () => {
      seen = await events(c);
      return seen.find(pred) ?? null;
    },
    timeoutMs,
    everyMs,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nevents:\n${seen.map((x) => `${x.kind}: ${x.message}`).join('\n')}`, { cause: e });
  });
}

/**
 * `waitUntil` whose timeout error also lists the cluster's events: a wait on files or orders
 * that never came names the failover, restore or detection that took them away.
 */
export async function waitExplained<T>(
  c: Cluster,
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  try {
    return await waitUntil(what, fn, timeoutMs, everyMs);
  } catch (e) {
    const seen = await events(c).catch((err: Error) => [{ kind: 'events unreadable', message: err.message }]);
    throw new Error(`${(e as Error).message}\nevents:\n${seen.map((x) => `${x.kind}: ${x.message}`).join('\n')}`, { cause: e });
  }
}

/** `GET /v1/runbooks?site=S`, with their journals. */
export async function runbooks(c: Cluster, site?: string): Promise<Runbook[]> {
  return (await api<{ runbooks: Runbook[] }>(c, `/v1/runbooks${site ? `?site=${encodeURIComponent(site)}` : ''}`)).runbooks;
}

/** Whether the site's newest restore point was taken after `at` (it holds what was acknowledged by then). */
export async function newestPointAfter(c: Cluster, at: number, site = 'shop'): Promise<boolean> {
  const { points } = await api<{ points: { takenAt: number }[] }>(c, `/v1/sites/${encodeURIComponent(site)}/backups`);
  return (points[0]?.takenAt ?? 0) > at;
}

/** Asserts that no event of `kinds` is among `evs`; a failure quotes the messages of those there. */
export function assertNoEvents(evs: Ev[], kinds: readonly string[], label = ''): void {
  for (const k of kinds) {
    const found = evs.filter((e) => e.kind === k);
    assert.ok(found.length === 0, `${label}no ${k}: ${found.map((e) => e.message).join(' | ')}`);
  }
}

/**
 * What `waitServing` waits for: the site served from `host` (any host when absent), with
 * replication streaming unless `streaming` is false, and no lag when `caughtUp`.
 */
export interface Serving {
  host?: string;
  streaming?: boolean;
  caughtUp?: boolean;
}

/** Waits until the (first) site serves as `want` says and returns that status; `from` is a cluster or a reader of its status (a rig's). */
export async function waitServing(from: Cluster | (() => Promise<Status>), want: Serving = {}, timeoutMs = 60_000, everyMs = 50): Promise<Status> {
  const read = typeof from === 'function' ? from : () => status(from);
  const streaming = want.streaming ?? true;
  return waitUntil(
    `serving${want.host ? ` on ${want.host}` : ''}${streaming ? ' with replication streaming' : ''}${want.caughtUp ? ' and no lag' : ''}`,
    async () => {
      const st = await read();
      const s = st.sites[0]!;
      const ok =
        s.state === 'serving' &&
        (!want.host || s.primary.host === want.host) &&
        (!streaming || s.replication.state === 'streaming') &&
        (!want.caughtUp || s.replication.lagMs === 0);
      return ok ? st : null;
    },
    timeoutMs,
    everyMs,
  );
}
