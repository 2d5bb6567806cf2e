import path from 'node:path';
import type { Logger } from 'pino';
import { UnderstudyError } from '../shared/errors.ts';
import { parseBody, type JsonRouter } from '../shared/http-json.ts';
import { applyFiles, replicaManifest } from './file-sync.ts';
import type { ReplicaDbWriter } from './replica-db-writer.ts';
import { baseVolumeDirs, findBaseDatabase, seedReplicaFiles } from './replica-base.ts';
import {
  binaryRequest,
  filesSchema,
  framesRequest,
  heldSchema,
  helloSchema,
  snapshotBaseSchema,
  snapshotBlocksSchema,
  snapshotChunkSchema,
  snapshotCommitSchema,
} from './replica-protocol.ts';

/** A replica volume as the replica side's routes see it. */
export interface ReplicaVolume {
  meta: { site: string; source?: string };
  dir: string;
}

/**
 * What the replica side needs of its storage processor. `op` runs one replication
 * request under the volume's lock, fenced by epoch (a stale one is refused; a newer one
 * makes a primary here a replica), see StorageProcessor.replicaOp.
 */
export interface ReplicaSide<V extends ReplicaVolume> {
  storagePath: string;
  log: Logger;
  op<T>(site: string, epoch: number, fn: (v: V) => Promise<T>): Promise<T>;
  persistSource(v: V, from: string): Promise<void>;
  writer(v: V, rel: string): ReplicaDbWriter;
  /** A re-seeded copy: its last full verification no longer applies. */
  copyReplaced(site: string): void;
  /**
   * A copy an e2e test damaged and froze (test-hooks.ts, off in production): the
   * `lastFrame` the idle heartbeat should get, so that the damage stays unseen until a
   * promotion verifies the copy; undefined for every other copy.
   */
  frozenHeld?(site: string, lastFrame: number): number | undefined;
}

/** A database path inside a volume, never one that leads out of it. */
export function checkDbRel(rel: string): string {
  if (path.isAbsolute(rel) || rel.split(/[\\/]/).some((p) => p === '..' || p === ''))
    throw new UnderstudyError('US_UNSAFE_PATH', `${rel}: not a database path inside the volume`);
  return rel;
}

/**
 * The replica side of replication (`/v1/replica/:site/*`, replica-protocol.ts): what a
 * primary's shipper sends to the storage processor holding the replica. Every request
 * carries the site's epoch and runs through `side.op`.
 */
export function registerReplicaRoutes<V extends ReplicaVolume>(r: JsonRouter, side: ReplicaSide<V>): void {
  r.on('POST', '/v1/replica/:site/hello', (q) => {
    const b = parseBody(helloSchema, q.body);
    return side.op(q.params.site!, b.epoch, async (v) => {
      if (v.meta.source !== b.from) await side.persistSource(v, b.from);
      // Failback: an empty replica starts from the plain files of an older copy held here, so only what differs is sent.
      const seeded = await seedReplicaFiles(v.dir, baseVolumeDirs(side.storagePath, v.meta.site));
      if (seeded)
        side.log.info(
          { site: v.meta.site, from: seeded.from, files: seeded.files },
          'replica seeded with the plain files of an older copy; only what differs will be sent',
        );
      return { files: await replicaManifest(v.dir) };
    });
  });
  r.on('POST', '/v1/replica/:site/snapshot/base', (q) => {
    const b = parseBody(snapshotBaseSchema, q.body);
    return side.op(q.params.site!, b.epoch, async (v) => {
      const rel = checkDbRel(b.db);
      const from = findBaseDatabase(baseVolumeDirs(side.storagePath, v.meta.site), rel);
      if (from === null) return { base: null };
      const { size, hashes } = await side.writer(v, rel).prepareBase(b.generation, from, b.blockSize);
      side.log.info({ site: v.meta.site, db: rel, from, size }, 'differential generation: an older copy of the database is the base');
      return { base: { size, blockSize: b.blockSize, hashes: hashes.toString('base64') } };
    });
  });
  r.on('POST', '/v1/replica/:site/snapshot/blocks', (q) => {
    const { meta: b, data } = binaryRequest(snapshotBlocksSchema, q);
    return side.op(q.params.site!, b.epoch, async (v) => {
      await side.writer(v, checkDbRel(b.db)).snapshotBlocks(b.generation, b.blockSize, b.indexes, data);
      return { ok: true };
    });
  });
  r.on('POST', '/v1/replica/:site/snapshot/chunk', (q) => {
    const { meta: b, data } = binaryRequest(snapshotChunkSchema, q);
    return side.op(q.params.site!, b.epoch, async (v) => {
      await side.writer(v, checkDbRel(b.db)).snapshotChunk(b.generation, b.part, b.offset, data);
      return { ok: true };
    });
  });
  r.on('POST', '/v1/replica/:site/snapshot/commit', (q) => {
    const b = parseBody(snapshotCommitSchema, q.body);
    return side.op(q.params.site!, b.epoch, async (v) => {
      const lastFrame = await side.writer(v, checkDbRel(b.db)).snapshotCommit(b.generation, b.dbSize, b.dbSha256, b.walSize, b.diff === true, b.walEncoding);
      side.copyReplaced(v.meta.site); // a re-seeded copy: its last full verification no longer applies
      return { lastFrame };
    });
  });
  r.on('POST', '/v1/replica/:site/held', (q) => {
    const b = parseBody(heldSchema, q.body);
    const frozen = side.frozenHeld?.(q.params.site!, b.lastFrame);
    if (frozen !== undefined) return { lastFrame: frozen };
    return side.op(q.params.site!, b.epoch, async (v) => ({ lastFrame: side.writer(v, checkDbRel(b.db)).held(b.generation, b.lastFrame) }));
  });
  r.on('POST', '/v1/replica/:site/frames', (q) => {
    const { meta: b, newWal, frames } = framesRequest(q);
    return side.op(q.params.site!, b.epoch, async (v) => ({
      lastFrame: await side.writer(v, checkDbRel(b.db)).appendFrames(b.generation, newWal, b.firstIndex, frames),
    }));
  });
  r.on('POST', '/v1/replica/:site/files', (q) => {
    const b = parseBody(filesSchema, q.body);
    return side.op(q.params.site!, b.epoch, async (v) => {
      await applyFiles(v.dir, b);
      return { ok: true };
    });
  });
}
