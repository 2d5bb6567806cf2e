import { z } from 'zod';
import { callJson } from '../shared/http-client.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { parseBody } from '../shared/http-json.ts';

/**
 * The storage→storage replication protocol: the processor holding a primary volume
 * (the source) calls these endpoints on the processor holding the replica. Every
 * request carries the source's epoch for the site; the replica refuses one lower
 * than the highest it has seen with 409 US_STALE_EPOCH (fencing), and answers
 * US_REPLICA_MISMATCH with details `{ needSnapshot: true }` when a request does not
 * continue what it holds (the source then starts a new generation).
 *
 *   POST /v1/replica/:site/hello            { epoch, from }                → { files: FileEntry[] }
 *   POST /v1/replica/:site/snapshot/chunk   meta { epoch, db, generation, part: 'db'|'wal', offset }, body: the bytes
 *   POST /v1/replica/:site/snapshot/base    { epoch, db, generation, blockSize } → { base: { size, blockSize, hashes } | null }
 *   POST /v1/replica/:site/snapshot/blocks  meta { epoch, db, generation, blockSize, indexes }, body: the blocks
 *   POST /v1/replica/:site/snapshot/commit  { epoch, db, generation, dbSize, dbSha256, walSize, diff? } → { lastFrame }
 *   POST /v1/replica/:site/frames           meta { epoch, db, generation, firstIndex, newWalBytes? }, body: [new WAL header] frames → { lastFrame }
 *   POST /v1/replica/:site/files            { epoch, put: [{ path, data, mtimeMs, mode, sha256 }], delete: [path] }
 *   POST /v1/replica/:site/held             { epoch, db, generation, lastFrame }  → { lastFrame }, or needSnapshot
 *
 * `held` is the source's idle heartbeat: the replica answers needSnapshot when it no
 * longer holds that generation up to that frame (it restarted, or its live copy check
 * found the copy damaged and forgot it), so a copy is re-seeded without waiting for a write.
 *
 * A differential generation (the replica already holds an older copy: failback) asks
 * `snapshot/base` first: the replica copies its best older copy of the database aside
 * and answers the hashes of its blocks (BLOCK_HASH_BYTES each, base64), or null; the
 * source sends only the differing blocks (`snapshot/blocks`, `data` = the blocks
 * concatenated in `indexes` order), then the WAL part and `snapshot/commit` with
 * `diff: true`, which verifies the rebuilt image's size and sha256 like a full one
 * (needSnapshot on any mismatch: the source then sends the full image).
 *
 * Bulk data travels as it is: the requests that carry WAL frames, image chunks and blocks
 * have a binary body (application/octet-stream) and their metadata, a small JSON object, in
 * the `x-understudy-meta` header (URI-encoded). Encoding megabytes of frames as base64 in
 * JSON cost a third more bytes and a copy and a parse on both sides, on the sync-mode write
 * path. The smaller answers and `files`, `hashes` stay JSON. `db` is the database's path
 * relative to the volume root, e.g. `orders.db`, `notes.sqlite`, `data/store`.
 */
export const META_HEADER = 'x-understudy-meta';

const epoch = z.number().int().nonnegative();
// Any name (databases are found by their header), but never a companion file or a path out of the volume (checked again by the receiver).
const dbName = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !/-(wal|shm|journal)$/.test(p), 'must name a database, not its -wal/-shm/-journal')
  .refine(
    (p) => !p.startsWith('/') && !p.split('/').some((part) => part === '..' || part === '' || part.startsWith('.understudy-tmp-')),
    'must be a path inside the volume',
  );
const b64 = z.string();

export const helloSchema = z.object({ epoch, from: z.string() });
export const snapshotChunkSchema = z.object({
  epoch,
  db: dbName,
  generation: z.number().int(),
  part: z.enum(['db', 'wal']),
  offset: z.number().int().nonnegative(),
});
const blockSize = z
  .number()
  .int()
  .min(512)
  .max(1 << 20);
export const snapshotBaseSchema = z.object({ epoch, db: dbName, generation: z.number().int(), blockSize });
export const snapshotBlocksSchema = z.object({
  epoch,
  db: dbName,
  generation: z.number().int(),
  blockSize,
  indexes: z.array(z.number().int().nonnegative()),
});
export const snapshotCommitSchema = z.object({
  epoch,
  db: dbName,
  generation: z.number().int(),
  dbSize: z.number().int().nonnegative(),
  dbSha256: z.string(),
  walSize: z.number().int().nonnegative(),
  diff: z.boolean().optional(),
  /** The WAL part was sent encoded against the image (block-diff.ts encodeWalPart); walSize is its decoded size. */
  walEncoding: z.enum(['xor-image-deflate']).optional(),
});
export const framesSchema = z.object({
  epoch,
  db: dbName,
  generation: z.number().int(),
  firstIndex: z.number().int().positive(),
  /** The body begins with a new WAL's header of this many bytes (the WAL restarted); the frames follow. */
  newWalBytes: z.number().int().nonnegative().optional(),
});
export const heldSchema = z.object({ epoch, db: dbName, generation: z.number().int(), lastFrame: z.number().int().nonnegative() });
export const filesSchema = z.object({
  epoch,
  put: z.array(z.object({ path: z.string().min(1), data: b64, mtimeMs: z.number(), mode: z.number().int(), sha256: z.string() })),
  delete: z.array(z.string().min(1)),
});

export interface FileEntry {
  path: string;
  size: number;
  sha256: string;
}
export interface HelloResponse {
  files: FileEntry[];
}
export interface FramesResponse {
  lastFrame: number;
}
export interface SnapshotBaseResponse {
  base: { size: number; blockSize: number; hashes: string } | null;
}

export type SnapshotChunk = z.infer<typeof snapshotChunkSchema>;
export type SnapshotCommit = z.infer<typeof snapshotCommitSchema>;
export type SnapshotBase = z.infer<typeof snapshotBaseSchema>;
export type SnapshotBlocks = z.infer<typeof snapshotBlocksSchema>;
export type FramesRequest = z.infer<typeof framesSchema>;
/** What a shipper sends as frames: the metadata, the new WAL's header if it restarted, the frames. */
export interface FramesToSend {
  db: string;
  generation: number;
  firstIndex: number;
  newWal?: Buffer;
  frames: Buffer;
}

export type FilesRequest = z.infer<typeof filesSchema>;
export type HeldRequest = z.infer<typeof heldSchema>;

/**
 * A binary replication request as its route receives it: the metadata from the header,
 * validated like a JSON body, and the bytes. A JSON body is a peer that speaks the older
 * base64-in-JSON form: refused with a message that says what to do.
 */
export function binaryRequest<T>(
  schema: z.ZodType<T>,
  q: { headers: Record<string, string | string[] | undefined>; body: unknown },
): { meta: T; data: Buffer } {
  const raw = q.headers[META_HEADER];
  if (typeof raw !== 'string') {
    throw new UnderstudyError(
      'US_PROTOCOL_MISMATCH',
      `a replication request without its ${META_HEADER} header: the sending storage processor runs another Understudy version; run the same version on every storage processor`,
    );
  }
  let meta: unknown;
  try {
    meta = JSON.parse(decodeURIComponent(raw));
  } catch {
    throw new UnderstudyError('US_BAD_REQUEST', `the ${META_HEADER} header is not URI-encoded JSON`);
  }
  const data = Buffer.isBuffer(q.body) ? q.body : q.body === undefined ? Buffer.alloc(0) : null;
  if (data === null) throw new UnderstudyError('US_BAD_REQUEST', 'a replication request with data needs an application/octet-stream body');
  return { meta: parseBody(schema, meta), data };
}

/** A frames request: the new WAL's header (when the WAL restarted) and the frames, split from one body. */
export function framesRequest(q: { headers: Record<string, string | string[] | undefined>; body: unknown }): {
  meta: FramesRequest;
  newWal: Buffer | undefined;
  frames: Buffer;
} {
  const { meta, data } = binaryRequest(framesSchema, q);
  const n = meta.newWalBytes ?? 0;
  if (n > data.length) throw new UnderstudyError('US_BAD_REQUEST', `newWalBytes ${n} is larger than the body (${data.length} bytes)`);
  return { meta, newWal: n > 0 ? data.subarray(0, n) : undefined, frames: data.subarray(n) };
}

/** The source side's handle on one replica volume: `epoch` is read at every call. */
export class ReplicaClient {
  constructor(
    readonly baseUrl: string,
    readonly site: string,
    private readonly epochOf: () => number,
    private readonly timeoutMs = 15_000,
    /**
     * `replica` (the site's replica, promotable) or `reader` (a read-only copy of the
     * site's `volume.readonly` portion for a reader host, never promotable:
     * src/storage/reader-copies.ts). The same protocol under /v1/<channel>/:site/.
     */
    readonly channel: 'replica' | 'reader' = 'replica',
  ) {}

  private url(p: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/v1/${this.channel}/${encodeURIComponent(this.site)}/${p}`;
  }

  hello(from: string): Promise<HelloResponse> {
    return callJson<HelloResponse>(this.url('hello'), { body: { epoch: this.epochOf(), from }, timeoutMs: this.timeoutMs });
  }

  snapshotChunk(c: Omit<SnapshotChunk, 'epoch'>, data: Buffer): Promise<unknown> {
    return this.binary('snapshot/chunk', c, data);
  }

  snapshotBase(c: Omit<SnapshotBase, 'epoch'>): Promise<SnapshotBaseResponse> {
    return callJson<SnapshotBaseResponse>(this.url('snapshot/base'), { body: { ...c, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }

  snapshotBlocks(c: Omit<SnapshotBlocks, 'epoch'>, data: Buffer): Promise<unknown> {
    return this.binary('snapshot/blocks', c, data);
  }

  snapshotCommit(c: Omit<SnapshotCommit, 'epoch'>): Promise<FramesResponse> {
    return callJson<FramesResponse>(this.url('snapshot/commit'), { body: { ...c, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }

  frames(f: FramesToSend): Promise<FramesResponse> {
    const meta: Omit<FramesRequest, 'epoch'> = {
      db: f.db,
      generation: f.generation,
      firstIndex: f.firstIndex,
      ...(f.newWal ? { newWalBytes: f.newWal.length } : {}),
    };
    return this.binary<FramesResponse>('frames', meta, f.newWal ? Buffer.concat([f.newWal, f.frames]) : f.frames);
  }

  private binary<T = unknown>(p: string, meta: object, data: Buffer): Promise<T> {
    return callJson<T>(this.url(p), {
      raw: data,
      headers: { [META_HEADER]: encodeURIComponent(JSON.stringify({ ...meta, epoch: this.epochOf() })) },
      timeoutMs: this.timeoutMs,
    });
  }

  held(h: Omit<HeldRequest, 'epoch'>): Promise<FramesResponse> {
    return callJson<FramesResponse>(this.url('held'), { body: { ...h, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }

  files(f: Omit<FilesRequest, 'epoch'>): Promise<unknown> {
    return callJson(this.url('files'), { body: { ...f, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }
}
