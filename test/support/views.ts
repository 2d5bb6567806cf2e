import type { StatusView } from '../../src/controller/status-view.ts';
import type { EventRecord, RunbookView } from '../../src/state/state-store.ts';
import { api, type Cluster } from './cluster.ts';

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

/** `GET /v1/events?after=N` (oldest first). */
export async function events(c: Cluster, after = 0): Promise<Ev[]> {
  return (await api<{ events: Ev[] }>(c, `/v1/events?after=${after}`)).events;
}

/** `GET /v1/runbooks?site=S`, with their journals. */
export async function runbooks(c: Cluster, site?: string): Promise<Runbook[]> {
  return (await api<{ runbooks: Runbook[] }>(c, `/v1/runbooks${site ? `?site=${encodeURIComponent(site)}` : ''}`)).runbooks;
}
