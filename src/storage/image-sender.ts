import type { Logger } from 'pino';
import type { GenerationSeed } from '../shared/contracts.ts';
import { isUnderstudyError } from '../shared/errors.ts';
import { differingBlocks, encodeWalPart, packBlocks, sqlitePageSize } from './block-diff.ts';
import type { ReplicaClient } from './replica-protocol.ts';
import { digestHex } from './hash-thread.ts';

/** Images smaller than this are sent whole (a base round trip would cost more). @see ImageSendContext.diffMinBytes */
const DIFF_MIN_BYTES = 8 * 1024;
/** A differential generation is used only when at most this share of the blocks differ. */
const DIFF_MAX_SHARE = 0.5;

/** Who sends: the replica's client, the database (path in the volume), and when to give up. */
export interface ImageSendContext {
  client: ReplicaClient;
  rel: string;
  /** Bytes per snapshot chunk request. */
  chunkBytes: number;
  log: Logger;
  /** True once the sender was stopped: the send ends early (answers null). */
  stopped: () => boolean;
  /** Images smaller than this are sent whole, without asking the replica for a base. @default 8 KiB */
  diffMinBytes?: number;
}

/**
 * Sends a generation's image and WAL part and commits them on the replica; returns
 * what it cost (null when stopped meanwhile). Differential when the replica holds an
 * older copy of the database (snapshot/base answers its block hashes) and less than
 * `DIFF_MAX_SHARE` of the image differs: only the differing blocks go; the replica
 * rebuilds the image from its copy and checks size and sha256 against ours, and any
 * mismatch (needSnapshot) makes us send the full image at once.
 */
export async function sendImage(ctx: ImageSendContext, generation: number, image: Buffer, wal: Buffer): Promise<GenerationSeed | null> {
  const c = ctx.client;
  const dbSha256 = await digestHex(image, 'sha256');
  const seed: GenerationSeed = {
    db: ctx.rel,
    generation,
    kind: 'full',
    bytesSent: 0,
    dbBytes: image.length,
    walBytes: wal.length,
    blocks: 0,
    blocksSent: 0,
    at: Date.now(),
  };
  const sendParts = async (parts: readonly (readonly ['db' | 'wal', Buffer])[]): Promise<boolean> => {
    for (const [part, buf] of parts) {
      // An empty WAL part is not sent: the commit says walSize 0 and reads none.
      if (part === 'wal' && buf.length === 0) continue;
      for (let off = 0; off < buf.length || off === 0; off += ctx.chunkBytes) {
        if (ctx.stopped()) return false;
        const data = buf.subarray(off, off + ctx.chunkBytes);
        await c.snapshotChunk({ db: ctx.rel, generation, part, offset: off }, data);
        seed.bytesSent += data.length;
        if (buf.length === 0) break;
      }
    }
    return true;
  };
  const blockSize = sqlitePageSize(image);
  let base: { size: number; hashes: Buffer } | null = null;
  if (blockSize !== null && image.length >= (ctx.diffMinBytes ?? DIFF_MIN_BYTES)) {
    try {
      const r = await c.snapshotBase({ db: ctx.rel, generation, blockSize });
      if (r.base && r.base.blockSize === blockSize) base = { size: r.base.size, hashes: Buffer.from(r.base.hashes, 'base64') };
    } catch (e) {
      // A replica that does not know snapshot/base (older version) gets a full copy.
      if (!isUnderstudyError(e) || e.code !== 'US_NOT_FOUND') throw e;
    }
  }
  seed.blocks = blockSize === null ? 0 : Math.ceil(image.length / blockSize);
  if (base !== null && blockSize !== null) {
    const differ = await differingBlocks(image, blockSize, base.hashes);
    if (differ.length <= seed.blocks * DIFF_MAX_SHARE) {
      const per = Math.max(1, Math.floor(ctx.chunkBytes / blockSize));
      for (let k = 0; k < differ.length; k += per) {
        if (ctx.stopped()) return null;
        const indexes = differ.slice(k, k + per);
        const data = packBlocks(image, blockSize, indexes);
        await c.snapshotBlocks({ db: ctx.rel, generation, blockSize, indexes }, data);
        seed.bytesSent += data.length;
      }
      // The WAL part (frames 1..P, older versions of pages mostly) goes encoded against the image.
      const encoded = wal.length > 0;
      if (!(await sendParts([['wal', encoded ? encodeWalPart(wal, image, blockSize) : wal]]))) return null;
      try {
        await c.snapshotCommit({
          db: ctx.rel,
          generation,
          dbSize: image.length,
          dbSha256,
          walSize: wal.length,
          diff: true,
          ...(encoded ? { walEncoding: 'xor-image-deflate' as const } : {}),
        });
        seed.kind = 'differential';
        seed.blocksSent = differ.length;
        return seed;
      } catch (e) {
        if (!isUnderstudyError(e) || (e.details as { needSnapshot?: boolean } | undefined)?.needSnapshot !== true) throw e;
        seed.fallback = e.message;
        ctx.log.warn({ generation, err: e.message }, 'differential snapshot did not verify on the replica; sending the full image');
      }
    } else {
      seed.fallback = `${differ.length} of ${seed.blocks} blocks differ: a full copy is cheaper`;
    }
  }
  if (
    !(await sendParts([
      ['db', image],
      ['wal', wal],
    ]))
  )
    return null;
  await c.snapshotCommit({ db: ctx.rel, generation, dbSize: image.length, dbSha256, walSize: wal.length });
  seed.blocksSent = seed.blocks;
  return seed;
}
