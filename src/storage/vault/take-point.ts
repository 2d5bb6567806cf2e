import { UnderstudyError } from '../../shared/errors.ts';
import type { Logger } from 'pino';
import type { PointFile, PointManifest, VaultPoint, VerificationProblem } from '../../shared/contracts.ts';
import { splitChunks } from './chunking.ts';
import { digestHex } from '../hash-thread.ts';
import { pointIdOf } from './point-id.ts';
import type { VaultClient } from './vault-client.ts';
import type { CapturedFile } from './volume-capture.ts';

/**
 * Stores one restore point of a primary volume in the vault:
 *   1. a consistent image of the volume (volume-capture.ts, taken by the caller);
 *   2. each file cut into chunks, hashed;
 *   3. ask the vault which chunks it lacks (POST has), send only those (PUT chunk,
 *      a few in parallel; the vault hashes each on receipt);
 *   4. send the manifest (POST points): the vault checks every chunk is there, stores
 *      it, applies retention (`keep`) and collects unreferenced chunks.
 * Nothing is written to the volume. A failure leaves at most unreferenced chunks in
 * the vault, which a later collection removes.
 */
export interface TakePointOptions {
  site: string;
  /** The consistent image (volume-capture.ts), taken by the caller while the volume's role and epoch held. */
  captured: CapturedFile[];
  epoch: number;
  /** This storage system's name (recorded in the manifest). */
  source: string;
  vault: VaultClient;
  keep: number;
  chunkBytes: number;
  /** The point's time; unique per site (the caller bumps it past the previous point). */
  takenAt: number;
  log: Logger;
  /** Chunks in flight at once. @default 4 */
  parallel?: number;
}

export interface TakenPoint {
  point: VaultPoint;
  sentBytes: number;
  sentChunks: number;
  ms: number;
}

export async function takePoint(o: TakePointOptions): Promise<TakenPoint> {
  const t0 = performance.now();
  const captured = o.captured;
  const files: PointFile[] = [];
  const byHash = new Map<string, Buffer>();
  for (const c of captured) {
    const chunks = await splitChunks(c.data, o.chunkBytes);
    for (const ch of chunks) byHash.set(ch.hash, ch.data);
    files.push({
      path: c.path,
      kind: c.kind,
      size: c.data.length,
      mode: c.mode,
      mtimeMs: c.mtimeMs,
      sha256: await digestHex(c.data, 'sha256'),
      chunks: chunks.map((ch) => ch.hash),
    });
  }
  // A database the previous point had and this capture lacks means the volume lost it (a file
  // removed, a directory being deleted): such a point would restore a shop without its orders.
  const newest = (await o.vault.points(o.site))[0];
  if (newest) {
    const before = await o.vault.manifest(o.site, newest.id);
    const lost = before.files.filter((f) => f.kind === 'db' && !files.some((g) => g.path === f.path)).map((f) => f.path);
    if (lost.length > 0) {
      throw new UnderstudyError(
        'US_VOLUME_DAMAGED',
        `${o.site}: ${lost.join(', ')} missing from the volume (restore point ${newest.id} had it); no restore point is taken of a volume that lost a database`,
        {
          problem: { file: lost[0]!, kind: 'unreadable', detail: `missing from the volume (restore point ${newest.id} had it)` } satisfies VerificationProblem,
        },
      );
    }
  }
  const missing = await o.vault.missing(o.site, [...byHash.keys()]);
  let sentBytes = 0;
  const queue = [...missing];
  const worker = async (): Promise<void> => {
    for (let h = queue.shift(); h !== undefined; h = queue.shift()) {
      const data = byHash.get(h)!;
      await o.vault.putChunk(h, data);
      sentBytes += data.length;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.parallel ?? 4) }, worker));
  const manifest: PointManifest = {
    version: 1,
    site: o.site,
    id: pointIdOf(o.takenAt),
    takenAt: o.takenAt,
    epoch: o.epoch,
    source: o.source,
    chunkBytes: o.chunkBytes,
    files,
    bytes: files.reduce((a, f) => a + f.size, 0),
    newBytes: 0,
  };
  const point = await o.vault.commit(o.site, manifest, o.keep);
  const ms = Math.round(performance.now() - t0);
  o.log.info({ site: o.site, point: point.id, bytes: point.bytes, sentBytes, sentChunks: missing.length, ms }, 'restore point taken');
  return { point, sentBytes, sentChunks: missing.length, ms };
}
