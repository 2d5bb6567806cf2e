import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { UnderstudyError } from '../shared/errors.ts';
import { removeDurable, writeFileDurable } from './fs-durable.ts';
import { FileManifest, sha256 } from './file-manifest.ts';
import { hasSqliteMagic, isDatabaseArtifact } from './sqlite-file.ts';
import { DirectoryWatch } from './dir-watch.ts';
import type { FilesRequest, ReplicaClient } from './replica-protocol.ts';

/**
 * Keeps the replica's plain files equal to the source's. A periodic scan of the
 * manifest is the truth; fs.watch events only make the next scan come sooner.
 * `confirmed` is what the replica is known to hold (path → sha256), learnt from its
 * manifest at `start` (hello) and updated on every acknowledged batch.
 */
export interface FileShipperOptions {
  volumeDir: string;
  client: ReplicaClient;
  logger: Logger;
  /** Interval of the full scan. @default 1000 */
  scanMs?: number;
  /** Most bytes of file content per request. @default 16 MiB */
  maxBatchBytes?: number;
  /** Only paths this accepts are shipped, compared or deleted (a reader copy's portion). @default everything */
  include?: (rel: string) => boolean;
  /**
   * Databases the volume shipper knows (by header, whatever their name), and their
   * companions: their writes do not wake the file scan. @default names only
   */
  isDatabase?: (rel: string) => boolean;
}

export class FileShipper {
  private readonly manifest: FileManifest;
  private confirmed = new Map<string, string>();
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private watcher: DirectoryWatch | null = null;
  /** When the oldest difference not yet confirmed was first seen. */
  private dirtySince: number | null = null;
  state: 'streaming' | 'error' | 'stopped' = 'streaming';
  lastError: string | undefined;
  /** Bytes of file content acknowledged by the replica since start. */
  bytesSent = 0;
  /** Called after every scan (the volume shipper discovers new databases then). */
  onScan: (() => void) | null = null;

  constructor(private readonly opts: FileShipperOptions) {
    this.manifest = new FileManifest(opts.volumeDir);
  }

  /** `replicaFiles` is the replica's manifest from hello. */
  start(replicaFiles: { path: string; sha256: string }[]): void {
    const include = this.opts.include ?? (() => true);
    this.confirmed = new Map(replicaFiles.filter((f) => include(f.path)).map((f) => [f.path, f.sha256]));
    const isDatabase = this.opts.isDatabase ?? (() => false);
    this.watcher = new DirectoryWatch(this.opts.volumeDir, (rel) => {
      if (rel === null || !(isDatabaseArtifact(rel) || isDatabase(rel))) {
        // A change the next scan will see: it counts in the lag from now, not from that scan.
        this.changedSince ??= Date.now();
        this.poke();
      }
    });
    this.watcher.refresh();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    this.poke();
    await this.loop;
    this.state = 'stopped';
  }

  /**
   * The age of the oldest change the replica may not hold: differences a scan found and
   * the replica has not confirmed, and changes the directory watch reported that no
   * finished scan has covered yet (a file written just before a crash is counted before
   * any scan saw it).
   */
  lagMs(now = Date.now()): number {
    const since = Math.min(this.dirtySince ?? Infinity, this.changedSince ?? Infinity, this.scanningSince ?? Infinity);
    return since === Infinity ? 0 : Math.max(0, now - since);
  }

  /** The first watch event since the last scan began (null: none). */
  private changedSince: number | null = null;
  /** The watch events the running scan covers: counted until it has shipped. */
  private scanningSince: number | null = null;

  /** Callers of `nextScan()` waiting for a scan that begins after their call. */
  private scanWaiters: (() => void)[] = [];

  /**
   * Resolves after a scan that began after this call has shipped everything it found
   * (the copy then holds every plain file as of the call). Never rejects; it waits
   * through errors (race it with a timeout). Used before a reader host starts serving.
   */
  nextScan(): Promise<void> {
    const p = new Promise<void>((resolve) => this.scanWaiters.push(resolve));
    this.poke();
    return p;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (!this.stopped) {
      let delay = this.opts.scanMs ?? 1000;
      const waiting = this.scanWaiters;
      this.scanWaiters = [];
      this.scanningSince = this.changedSince;
      this.changedSince = null;
      try {
        await this.syncOnce();
        this.scanningSince = null;
        for (const w of waiting) w();
        this.state = 'streaming';
        this.lastError = undefined;
        backoff = 100;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (this.lastError !== msg) this.opts.logger.warn({ err: msg }, 'file replication interrupted; retrying');
        this.state = 'error';
        this.lastError = msg;
        this.scanWaiters.unshift(...waiting);
        // What this scan was to cover is still not shipped.
        if (this.scanningSince !== null) this.changedSince = Math.min(this.changedSince ?? Infinity, this.scanningSince);
        this.scanningSince = null;
        delay = backoff;
        backoff = Math.min(backoff * 2, 2000);
      }
      try {
        this.onScan?.();
      } catch {
        /* discovery is best effort */
      }
      this.watcher?.refresh(); // directories created since the last scan
      if (this.stopped) break;
      // A caller of nextScan() that arrived during this scan waits for the next one: at
      // once, not after the period (a reader's catch-up, a failover's drain wait on it).
      if (this.scanWaiters.length > 0 && this.state === 'streaming') continue;
      // A change the watch reported during the scan may have come after the scan read that
      // file (its event found no sleep to cut short): the next scan after the settle delay.
      if (this.changedSince !== null && this.state === 'streaming') delay = Math.min(delay, 20);
      await new Promise<void>((resolve) => {
        // A watch event arriving mid-write is followed by a short settle delay.
        const t = setTimeout(() => {
          this.wake = null;
          resolve();
        }, delay);
        this.wake = () => {
          clearTimeout(t);
          setTimeout(resolve, 20);
        };
      });
    }
  }

  /** One scan; sends what differs from what the replica confirmed. */
  async syncOnce(): Promise<void> {
    const all = await this.manifest.scan();
    const include = this.opts.include;
    const now = include ? new Map([...all].filter(([p]) => include(p))) : all;
    const changed = [...now.values()].filter((e) => this.confirmed.get(e.path) !== e.sha256);
    // A plain file that became a database (SQLite wrote its header into a file it had
    // created empty) is the database shipper's from now on: the replica's copy is not deleted.
    for (const p of this.manifest.databases) this.confirmed.delete(p);
    const deleted = [...this.confirmed.keys()].filter((p) => !now.has(p));
    if (changed.length === 0 && deleted.length === 0) {
      this.dirtySince = null;
      return;
    }
    this.dirtySince ??= Date.now();
    const max = this.opts.maxBatchBytes ?? 16 << 20;
    let batch: FilesRequest['put'] = [];
    let bytes = 0;
    const sent = new Map<string, string>();
    const flush = async (del: string[]): Promise<void> => {
      if (batch.length === 0 && del.length === 0) return;
      await this.opts.client.files({ put: batch, delete: del });
      this.bytesSent += bytes;
      for (const [p, h] of sent) this.confirmed.set(p, h);
      for (const p of del) this.confirmed.delete(p);
      batch = [];
      bytes = 0;
      sent.clear();
    };
    for (const e of changed) {
      let data: Buffer;
      try {
        data = await fsp.readFile(path.join(this.opts.volumeDir, e.path));
      } catch {
        continue;
      } // gone meanwhile: next scan
      if (isDatabaseArtifact(e.path, data)) continue; // became a database since the scan: never sent as a file
      if (bytes > 0 && bytes + data.length > max) await flush([]);
      const h = sha256(data);
      batch.push({ path: e.path, data: data.toString('base64'), mtimeMs: e.mtimeMs, mode: e.mode, sha256: h });
      sent.set(e.path, h);
      bytes += data.length;
    }
    await flush(deleted);
    this.dirtySince = null;
  }
}

/** Resolves a path from the wire inside the volume, refusing anything that escapes it. */
export function safeVolumePath(volumeDir: string, rel: string): string {
  const abs = path.resolve(volumeDir, rel);
  if (path.isAbsolute(rel) || rel.split(/[\\/]/).includes('..') || !abs.startsWith(path.resolve(volumeDir) + path.sep)) {
    throw new UnderstudyError('US_UNSAFE_PATH', `${rel}: not a path inside the volume`);
  }
  return abs;
}

/** Replica side: writes (temp + fsync + rename + fsync dir) and deletes files. */
export async function applyFiles(volumeDir: string, req: Pick<FilesRequest, 'put' | 'delete'>): Promise<void> {
  for (const f of req.put) {
    const data = Buffer.from(f.data, 'base64');
    if (isDatabaseArtifact(f.path, data))
      throw new UnderstudyError('US_BAD_REQUEST', `${f.path}: databases are replicated as consistent images and WAL frames, never as files`);
    const abs = safeVolumePath(volumeDir, f.path);
    if (sha256(data) !== f.sha256) throw new UnderstudyError('US_CHECKSUM_MISMATCH', `${f.path}: content does not match its checksum`);
    await writeFileDurable(abs, data, { mode: f.mode, mtimeMs: f.mtimeMs });
  }
  for (const p of req.delete) {
    const abs = safeVolumePath(volumeDir, p);
    // Never a database, whatever its name: it was installed by database replication.
    if (isDatabaseArtifact(p) || hasSqliteMagic(abs)) continue;
    await removeDurable(abs);
  }
}

/** Replica side: the manifest answered to hello. */
export async function replicaManifest(volumeDir: string): Promise<{ path: string; size: number; sha256: string }[]> {
  const m = await new FileManifest(volumeDir).scan();
  return [...m.values()].map((e) => ({ path: e.path, size: e.size, sha256: e.sha256 }));
}
