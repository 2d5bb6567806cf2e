import { z } from 'zod';
import type { PromoteResponse, StorageStatus, SyncBarrierResponse, TransformResponse, VolumeStatus } from '../shared/contracts.ts';
import { parseBody, type JsonRouter } from '../shared/http-json.ts';
import type { RenderedRule } from '../transform/render-rules.ts';
import { renderedRuleSchema } from '../transform/rule-schema.ts';

const epochSchema = z.number().int().nonnegative();
const partSchema = z.object({ name: z.string().min(1), url: z.string().url() });
const initSchema = z.object({ epoch: epochSchema, seed: z.string().min(1).optional() });
const replicateSchema = z.object({ epoch: epochSchema, to: partSchema });
const epochOnlySchema = z.object({ epoch: epochSchema });
const transformSchema = z.object({ epoch: epochSchema, rules: z.array(renderedRuleSchema) });
const confirmSchema = z.object({ timeoutMs: z.number().int().positive().max(60_000).optional() }).optional();
const readerStartSchema = z.object({ epoch: epochSchema, to: partSchema });
const readerStopSchema = z.object({ epoch: epochSchema.optional(), to: z.string().min(1) });
const readerCatchUpSchema = z.object({ timeoutMs: z.number().int().positive().max(60_000).default(5000), to: z.string().min(1).optional() });
const syncBarrierSchema = z
  .object({
    onReplicaLost: z.enum(['degrade', 'strict']).default('degrade'),
    timeoutMs: z.number().int().positive().max(60_000).default(2000),
  })
  .prefault({});

/** What a storage processor does for the controller and the director, behind its volume routes. */
export interface VolumeApi {
  syncBarrier(site: string, onReplicaLost: 'degrade' | 'strict', timeoutMs: number): Promise<SyncBarrierResponse>;
  name: string;
  status(): StorageStatus;
  volumeStatusOf(site: string): VolumeStatus;
  init(site: string, epoch: number, seed?: string): Promise<VolumeStatus>;
  replicate(site: string, epoch: number, to: { name: string; url: string }): Promise<VolumeStatus>;
  promote(site: string, epoch: number): Promise<PromoteResponse>;
  demote(site: string, epoch: number): Promise<VolumeStatus>;
  transform(site: string, epoch: number, rules: RenderedRule[]): Promise<TransformResponse>;
  catchUp(site: string, timeoutMs: number): Promise<void>;
  /** What the replica has confirmed of the site's primary volume here. */
  confirmedPosition(site: string): unknown;
  startReaders(site: string, epoch: number, to: { name: string; url: string }): Promise<unknown>;
  stopReaders(site: string, to: string): Promise<void>;
  readersCatchUp(site: string, timeoutMs: number, to?: string): Promise<{ readers: string[] }>;
}

/**
 * The storage processor's volume endpoints (contracts.ts, "storage processor"): the
 * sync barrier, status, and the volume lifecycle the controller drives (init,
 * replicate, promote, demote, transform, confirm), and the primary side of reader
 * copies. Bodies are checked here; the work and its rules are the processor's.
 */
export function registerVolumeRoutes(r: JsonRouter, sp: VolumeApi): void {
  // First: the director calls it after every write in sync mode.
  r.on('POST', '/v1/volumes/:site/sync-barrier', (q) => {
    const b = parseBody(syncBarrierSchema, q.body);
    return sp.syncBarrier(q.params.site!, b.onReplicaLost, b.timeoutMs);
  });
  r.on('GET', '/healthz', () => ({ ok: true, storage: sp.name }));
  r.on('GET', '/v1/status', () => sp.status());
  r.on('GET', '/v1/volumes/:site', (q) => sp.volumeStatusOf(q.params.site!));
  r.on('POST', '/v1/volumes/:site/init', (q) => {
    const b = parseBody(initSchema, q.body);
    return sp.init(q.params.site!, b.epoch, b.seed);
  });
  r.on('POST', '/v1/volumes/:site/replicate', (q) => {
    const b = parseBody(replicateSchema, q.body);
    return sp.replicate(q.params.site!, b.epoch, b.to);
  });
  r.on('POST', '/v1/volumes/:site/promote', (q) => sp.promote(q.params.site!, parseBody(epochOnlySchema, q.body).epoch));
  r.on('POST', '/v1/volumes/:site/demote', (q) => sp.demote(q.params.site!, parseBody(epochOnlySchema, q.body).epoch));
  r.on('POST', '/v1/volumes/:site/transform', (q) => {
    const b = parseBody(transformSchema, q.body);
    return sp.transform(q.params.site!, b.epoch, b.rules);
  });
  // Waits until the replica holds everything committed so far and every plain file as of the
  // call (a switchover, a failover's drain); 504 US_TIMEOUT after timeoutMs. Sync mode's barrier
  // for the databases, without the degrading, plus one file scan.
  r.on('POST', '/v1/volumes/:site/confirm', async (q) => {
    const b = parseBody(confirmSchema, q.body);
    await sp.catchUp(q.params.site!, b?.timeoutMs ?? 5000);
    return { position: sp.confirmedPosition(q.params.site!) };
  });

  // Reader copies, the primary's side (contracts.ts, "scale reads out").
  r.on('POST', '/v1/volumes/:site/readers', (q) => {
    const b = parseBody(readerStartSchema, q.body);
    return sp.startReaders(q.params.site!, b.epoch, b.to);
  });
  r.on('POST', '/v1/volumes/:site/readers/stop', async (q) => {
    const b = parseBody(readerStopSchema, q.body);
    await sp.stopReaders(q.params.site!, b.to);
    return { ok: true };
  });
  r.on('POST', '/v1/volumes/:site/readers/catch-up', (q) => {
    const b = parseBody(readerCatchUpSchema, q.body);
    return sp.readersCatchUp(q.params.site!, b.timeoutMs, b.to);
  });
}
