import { z } from 'zod';
import { callJson } from '../shared/http-client.ts';

/**
 * The storage→storage replication protocol: the processor holding a primary volume
 * (the source) calls these endpoints on the processor holding the replica. Every
 * request carries the source's epoch for the site; the replica refuses one lower
 * than the highest it has seen with 409 US_STALE_EPOCH (fencing), and answers
 * US_REPLICATION with details `{ needSnapshot: true }` when a request does not
 * continue what it holds (the source then starts a new generation).
 *
 *   POST /v1/replica/:site/hello            { epoch, from }                → { files: FileEntry[] }
 *   POST /v1/replica/:site/snapshot/chunk   { epoch, db, generation, part: 'db'|'wal', offset, data }
 *   POST /v1/replica/:site/snapshot/commit  { epoch, db, generation, dbSize, dbSha256, walSize } → { lastFrame }
 *   POST /v1/replica/:site/frames           { epoch, db, generation, newWal?, firstIndex, frames } → { lastFrame }
 *   POST /v1/replica/:site/files            { epoch, put: [{ path, data, mtimeMs, mode, sha256 }], delete: [path] }
 *
 * Binary payloads (`data`, `frames`, `newWal`) are base64 in JSON. `db` is the
 * database's path relative to the volume root, e.g. `orders.db`.
 */
const epoch = z.number().int().nonnegative();
const dbName = z.string().min(1).regex(/\.db$/, 'must name a .db file');
const b64 = z.string();

export const helloSchema = z.object({ epoch, from: z.string() });
export const snapshotChunkSchema = z.object({
  epoch, db: dbName, generation: z.number().int(), part: z.enum(['db', 'wal']),
  offset: z.number().int().nonnegative(), data: b64,
});
export const snapshotCommitSchema = z.object({
  epoch, db: dbName, generation: z.number().int(),
  dbSize: z.number().int().nonnegative(), dbSha256: z.string(), walSize: z.number().int().nonnegative(),
});
export const framesSchema = z.object({
  epoch, db: dbName, generation: z.number().int(), newWal: b64.optional(),
  firstIndex: z.number().int().positive(), frames: b64,
});
export const filesSchema = z.object({
  epoch,
  put: z.array(z.object({ path: z.string().min(1), data: b64, mtimeMs: z.number(), mode: z.number().int(), sha256: z.string() })),
  delete: z.array(z.string().min(1)),
});

export interface FileEntry { path: string; size: number; sha256: string }
export interface HelloResponse { files: FileEntry[] }
export interface FramesResponse { lastFrame: number }

export type SnapshotChunk = z.infer<typeof snapshotChunkSchema>;
export type SnapshotCommit = z.infer<typeof snapshotCommitSchema>;
export type FramesRequest = z.infer<typeof framesSchema>;
export type FilesRequest = z.infer<typeof filesSchema>;

/** The source side's handle on one replica volume: `epoch` is read at every call. */
export class ReplicaClient {
  constructor(
    readonly baseUrl: string,
    readonly site: string,
    private readonly epochOf: () => number,
    private readonly timeoutMs = 15_000,
  ) {}

  private url(p: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/v1/replica/${encodeURIComponent(this.site)}/${p}`;
  }

  hello(from: string): Promise<HelloResponse> {
    return callJson<HelloResponse>(this.url('hello'), { body: { epoch: this.epochOf(), from }, timeoutMs: this.timeoutMs });
  }

  snapshotChunk(c: Omit<SnapshotChunk, 'epoch'>): Promise<unknown> {
    return callJson(this.url('snapshot/chunk'), { body: { ...c, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }

  snapshotCommit(c: Omit<SnapshotCommit, 'epoch'>): Promise<FramesResponse> {
    return callJson<FramesResponse>(this.url('snapshot/commit'), { body: { ...c, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }

  frames(f: Omit<FramesRequest, 'epoch'>): Promise<FramesResponse> {
    return callJson<FramesResponse>(this.url('frames'), { body: { ...f, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }

  files(f: Omit<FilesRequest, 'epoch'>): Promise<unknown> {
    return callJson(this.url('files'), { body: { ...f, epoch: this.epochOf() }, timeoutMs: this.timeoutMs });
  }
}
