import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PointManifest, VaultPoint } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { fsyncDir, removeDurable, writeFileDurable, writeTemp } from '../fs-durable.ts';
import { KeyedLock } from '../keyed-lock.ts';
import { chunkPath, sha256Hex } from './chunking.ts';
import { isPointId } from './point-id.ts';
import { pointManifestSchema } from './point-manifest-schema.ts';

/**
 * The vault's disk: `<path>/chunks/ab/<sha256>` (each chunk once, whoever refers to
 * it) and `<path>/points/<site>/<id>.json` (one manifest per restore point).
 *
 * Contracts:
 *  - A chunk file is only ever written after its content was hashed and matched its
 *    name (a torn or tampered upload is refused), via temp + fsync + rename; the
 *    directories are fsynced before any manifest that refers to the chunk is written.
 *  - A manifest is written only when every chunk it names is present, so a stored point
 *    is complete unless the disk lost something afterwards (which verification finds).
 *  - Garbage collection deletes a chunk only when no manifest refers to it AND it is
 *    older than `gcGraceMs`. `has` refreshes the mtime of chunks it reports present:
 *    a backup that was told "you need not send X" cannot lose X to a collection that
 *    runs before its manifest arrives. If any manifest cannot be read, nothing is collected.
 *  - Commits, retention and collection run one at a time (one lock for the vault).
 */
export interface VaultStoreOptions {
  /** A chunk younger than this is never collected (see above). @default 3_600_000 */
  gcGraceMs?: number;
}

export class VaultStore {
  private readonly lock = new KeyedLock();
  private readonly dirtyDirs = new Set<string>();
  private readonly gcGraceMs: number;

  constructor(readonly root: string, private readonly log: Logger, opts: VaultStoreOptions = {}) {
    this.gcGraceMs = opts.gcGraceMs ?? 3_600_000;
  }

  private pointsDir(site: string): string {
    return path.join(this.root, 'points', site);
  }

  private pointFile(site: string, id: string): string {
    if (!isPointId(id)) throw new UnderstudyError('US_BAD_REQUEST', `"${id}" is not a restore point id (like 2025-03-01T12-00-05.123Z)`);
    return path.join(this.pointsDir(site), `${id}.json`);
  }

  /** The hashes among `hashes` that the vault does not hold; refreshes the mtime of those it holds. */
  async missing(hashes: string[]): Promise<string[]> {
    const now = new Date();
    const out: string[] = [];
    for (const h of new Set(hashes)) {
      try { await fsp.utimes(chunkPath(this.root, h), now, now); } catch { out.push(h); }
    }
    return out;
  }

  /** Stores a chunk after checking its content against its name. Returns false when it was already there. */
  async putChunk(hash: string, data: Buffer): Promise<boolean> {
    const actual = sha256Hex(data);
    if (actual !== hash) throw new UnderstudyError('US_BAD_REQUEST', `chunk ${hash}: its ${data.length} bytes hash to ${actual}: refused (damaged in transit?); send it again`);
    const target = chunkPath(this.root, hash);
    if (fs.existsSync(target)) return false;
    const tmp = await writeTemp(target, data);
    await fsp.rename(tmp, target);
    this.dirtyDirs.add(path.dirname(target));
    return true;
  }

  /** A chunk's bytes, or null when it is not in the vault. Not checked here: callers hash what they read. */
  async readChunk(hash: string): Promise<Buffer | null> {
    try { return await fsp.readFile(chunkPath(this.root, hash)); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /**
   * Stores a point's manifest once all its chunks are here, then applies retention
   * (the site's newest `keep` points stay) and collects unreferenced chunks.
   * Idempotent: a point id already stored with the same content returns its summary.
   */
  commit(site: string, input: PointManifest, keep: number): Promise<VaultPoint> {
    return this.lock.run('vault', async () => {
      if (input.site !== site) throw new UnderstudyError('US_BAD_REQUEST', `manifest is for site ${input.site}, posted for ${site}`);
      const file = this.pointFile(site, input.id);
      const existing = await this.readManifest(site, input.id).catch(() => null);
      if (existing) {
        if (existing.takenAt === input.takenAt && existing.bytes === input.bytes) return summaryOf(existing);
        throw new UnderstudyError('US_BAD_REQUEST', `restore point ${site}/${input.id} already exists with other content`);
      }
      const others = await this.manifests(site);
      const newestEpoch = others.reduce((a, m) => Math.max(a, m.epoch), 0);
      if (input.epoch < newestEpoch) {
        throw new UnderstudyError('US_STALE_EPOCH', `restore point of ${site} from ${input.source} carries epoch ${input.epoch}, but the vault holds points of epoch ${newestEpoch}: a fenced primary does not take backups`, { epoch: newestEpoch });
      }
      const absent = [];
      for (const h of new Set(input.files.flatMap((f) => f.chunks))) if (!fs.existsSync(chunkPath(this.root, h))) absent.push(h);
      if (absent.length > 0) throw new UnderstudyError('US_BAD_REQUEST', `restore point ${site}/${input.id}: ${absent.length} chunk(s) not in the vault (first ${absent[0]}): send them before the manifest`, { missing: absent });
      const known = new Set(others.flatMap((m) => m.files.flatMap((f) => f.chunks)));
      const counted = new Set<string>();
      let newBytes = 0;
      for (const f of input.files) {
        f.chunks.forEach((h, i) => {
          if (known.has(h) || counted.has(h)) return;
          counted.add(h);
          newBytes += Math.min(input.chunkBytes, f.size - i * input.chunkBytes);
        });
      }
      for (const d of this.dirtyDirs) await fsyncDir(d).catch(() => undefined);
      this.dirtyDirs.clear();
      const manifest: PointManifest = { ...input, newBytes };
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await writeFileDurable(file, JSON.stringify(manifest));
      this.log.info({ site, point: manifest.id, bytes: manifest.bytes, newBytes, epoch: manifest.epoch }, 'restore point stored');
      await this.applyRetention(site, keep);
      return summaryOf(manifest);
    });
  }

  /** Every point of a site, newest first. */
  async list(site: string): Promise<VaultPoint[]> {
    return (await this.manifests(site)).map(summaryOf);
  }

  async readManifest(site: string, id: string): Promise<PointManifest> {
    const file = this.pointFile(site, id);
    let text: string;
    try { text = await fsp.readFile(file, 'utf8'); } catch {
      throw new UnderstudyError('US_NOT_FOUND', `the vault holds no restore point ${id} of ${site}`);
    }
    let parsed: unknown;
    try { parsed = JSON.parse(text); } catch { throw new UnderstudyError('US_INTERNAL', `${file}: not valid JSON: the restore point is damaged; remove it`); }
    const r = pointManifestSchema.safeParse(parsed);
    if (!r.success) throw new UnderstudyError('US_INTERNAL', `${file}: invalid manifest (${r.error.issues[0]?.message ?? 'unknown'}): the restore point is damaged; remove it`);
    return r.data;
  }

  /** Deletes a site's points beyond the newest `keep`, then collects garbage. Runs inside the lock. */
  private async applyRetention(site: string, keep: number): Promise<void> {
    const ids = await this.ids(site);
    for (const id of ids.slice(keep)) {
      await removeDurable(this.pointFile(site, id));
      this.log.info({ site, point: id, keep }, 'restore point removed by retention');
    }
    await this.collect();
  }

  /** Deletes chunks no manifest refers to (older than the grace). Returns how many and how many bytes. */
  gc(): Promise<{ chunks: number; bytes: number }> {
    return this.lock.run('vault', () => this.collect());
  }

  private async collect(): Promise<{ chunks: number; bytes: number }> {
    const referenced = new Set<string>();
    const pointsRoot = path.join(this.root, 'points');
    for (const site of await readdirOrEmpty(pointsRoot)) {
      for (const id of await this.ids(site)) {
        // An unreadable manifest may refer to anything: collect nothing (readManifest throws).
        for (const f of (await this.readManifest(site, id)).files) for (const h of f.chunks) referenced.add(h);
      }
    }
    const cutoff = Date.now() - this.gcGraceMs;
    let chunks = 0;
    let bytes = 0;
    const chunksRoot = path.join(this.root, 'chunks');
    for (const fan of await readdirOrEmpty(chunksRoot)) {
      for (const name of await readdirOrEmpty(path.join(chunksRoot, fan))) {
        const p = path.join(chunksRoot, fan, name);
        if (referenced.has(name)) continue;
        const st = await fsp.stat(p).catch(() => null);
        // Temp files of uploads that died are collected too, once past the grace.
        if (!st || st.mtimeMs > cutoff) continue;
        await fsp.rm(p, { force: true });
        chunks++;
        bytes += st.size;
      }
    }
    if (chunks > 0) this.log.info({ chunks, bytes }, 'vault: unreferenced chunks collected');
    return { chunks, bytes };
  }

  /** Point ids of a site, newest first. */
  private async ids(site: string): Promise<string[]> {
    return (await readdirOrEmpty(this.pointsDir(site)))
      .filter((n) => n.endsWith('.json') && isPointId(n.slice(0, -5)))
      .map((n) => n.slice(0, -5))
      .sort()
      .reverse();
  }

  private async manifests(site: string): Promise<PointManifest[]> {
    const out: PointManifest[] = [];
    for (const id of await this.ids(site)) out.push(await this.readManifest(site, id));
    return out;
  }
}

export function summaryOf(m: PointManifest): VaultPoint {
  return { id: m.id, takenAt: m.takenAt, epoch: m.epoch, bytes: m.bytes, newBytes: m.newBytes, files: m.files.length };
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try { return await fsp.readdir(dir); } catch { return []; }
}
