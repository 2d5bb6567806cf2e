import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PointManifest, VaultPoint, VerificationResult } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { fsyncDir, removeDurable, tempPathFor, writeFileDurable, writeTemp } from '../fs-durable.ts';
import { KeyedLock } from '../keyed-lock.ts';
import { chunkPath, sha256Hex } from './chunking.ts';
import { isPointId } from './point-id.ts';
import { pointManifestSchema } from './point-manifest-schema.ts';
import { rebuildPoint } from './rebuild-point.ts';

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
 *  - Retention keeps the newest `keep` points that are not known bad: a point whose
 *    latest verification failed (`<id>.verify.json` beside its manifest, written by
 *    verifyPoint) does not count, so newer bad points never push out the newest good
 *    one. Bad points newer than the oldest point kept are kept too (at most `keep`),
 *    for the operator to see; the others go.
 */
export interface VaultStoreOptions {
  /** A chunk younger than this is never collected (see above). @default 3_600_000 */
  gcGraceMs?: number;
}

export class VaultStore {
  private readonly lock = new KeyedLock();
  private readonly dirtyDirs = new Set<string>();
  private readonly gcGraceMs: number;

  constructor(
    readonly root: string,
    private readonly log: Logger,
    opts: VaultStoreOptions = {},
  ) {
    this.gcGraceMs = opts.gcGraceMs ?? 3_600_000;
  }

  private pointsDir(site: string): string {
    return path.join(this.root, 'points', site);
  }

  private pointFile(site: string, id: string): string {
    if (!isPointId(id)) throw new UnderstudyError('US_BAD_REQUEST', `"${id}" is not a restore point id (like 2025-03-01T12-00-05.123Z)`);
    return path.join(this.pointsDir(site), `${id}.json`);
  }

  /** Beside the manifest: the point's latest verification (not matched by ids(): `<id>.verify` is no point id). */
  private verificationFile(site: string, id: string): string {
    return `${this.pointFile(site, id).slice(0, -5)}.verify.json`;
  }

  /** The point's latest recorded verification, or undefined when it was never verified. */
  async verificationOf(site: string, id: string): Promise<VaultPoint['verification']> {
    try {
      const v = JSON.parse(await fsp.readFile(this.verificationFile(site, id), 'utf8')) as VaultPoint['verification'];
      return v && typeof v.ok === 'boolean' ? v : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Verifies a stored point as a restore would (rebuild-point.ts: every chunk's hash, every
   * file's sha256, quick_check of the databases) in a temp directory, and records the result
   * beside its manifest — unless the point was removed meanwhile. Not under the vault lock
   * (it reads only; chunks a manifest refers to are never collected).
   */
  async verifyPoint(site: string, id: string): Promise<VerificationResult> {
    const t0 = performance.now();
    const m = await this.readManifest(site, id);
    const tmp = tempPathFor(path.join(this.root, `verify-${m.site}-${m.id}`));
    let problems;
    try {
      problems = await rebuildPoint(m, { get: (h) => this.readChunk(h) }, tmp);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    const result: VerificationResult = { ok: problems.length === 0, problems, checkedAt: Date.now(), ms: Math.round(performance.now() - t0) };
    await this.lock.run('vault', async () => {
      if (!fs.existsSync(this.pointFile(site, id))) return;
      const p = problems[0];
      const rec: NonNullable<VaultPoint['verification']> = {
        ok: result.ok,
        checkedAt: result.checkedAt,
        ...(p ? { problem: `${p.file}: ${p.kind}${p.detail ? ` (${p.detail})` : ''}` } : {}),
      };
      await writeFileDurable(this.verificationFile(site, id), JSON.stringify(rec));
      if (!result.ok) this.log.warn({ site, point: id, problems }, 'restore point failed verification: it no longer counts toward keep');
    });
    return result;
  }

  /** The site's points never verified, newest first. */
  async unverified(site: string): Promise<string[]> {
    const out: string[] = [];
    for (const id of await this.ids(site)) if (!fs.existsSync(this.verificationFile(site, id))) out.push(id);
    return out;
  }

  /** Sites with points. */
  async sites(): Promise<string[]> {
    return readdirOrEmpty(path.join(this.root, 'points'));
  }

  /** The hashes among `hashes` that the vault does not hold; refreshes the mtime of those it holds. */
  async missing(hashes: string[]): Promise<string[]> {
    const now = new Date();
    const out: string[] = [];
    for (const h of new Set(hashes)) {
      try {
        await fsp.utimes(chunkPath(this.root, h), now, now);
      } catch {
        out.push(h);
      }
    }
    return out;
  }

  /** Stores a chunk after checking its content against its name. Returns false when it was already there. */
  async putChunk(hash: string, data: Buffer): Promise<boolean> {
    const actual = sha256Hex(data);
    if (actual !== hash)
      throw new UnderstudyError(
        'US_CHECKSUM_MISMATCH',
        `chunk ${hash}: its ${data.length} bytes hash to ${actual}: refused (damaged in transit?); send it again`,
      );
    const target = chunkPath(this.root, hash);
    if (fs.existsSync(target)) return false;
    const tmp = await writeTemp(target, data);
    await fsp.rename(tmp, target);
    this.dirtyDirs.add(path.dirname(target));
    return true;
  }

  /** A chunk's bytes, or null when it is not in the vault. Not checked here: callers hash what they read. */
  async readChunk(hash: string): Promise<Buffer | null> {
    try {
      return await fsp.readFile(chunkPath(this.root, hash));
    } catch (e) {
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
        throw new UnderstudyError(
          'US_POINT_CONFLICT',
          `restore point ${site}/${input.id} already exists with other content: take the point again under a new id`,
        );
      }
      const others = await this.manifests(site);
      const newestEpoch = others.reduce((a, m) => Math.max(a, m.epoch), 0);
      if (input.epoch < newestEpoch) {
        throw new UnderstudyError(
          'US_STALE_EPOCH',
          `restore point of ${site} from ${input.source} carries epoch ${input.epoch}, but the vault holds points of epoch ${newestEpoch}: a fenced primary does not take backups`,
          { epoch: newestEpoch },
        );
      }
      const absent = [];
      for (const h of new Set(input.files.flatMap((f) => f.chunks))) if (!fs.existsSync(chunkPath(this.root, h))) absent.push(h);
      if (absent.length > 0)
        throw new UnderstudyError(
          'US_POINT_CONFLICT',
          `restore point ${site}/${input.id}: ${absent.length} chunk(s) not in the vault (first ${absent[0]}): send them before the manifest`,
          { missing: absent },
        );
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

  /** Every point of a site, newest first, with its latest verification when it has one. */
  async list(site: string): Promise<VaultPoint[]> {
    const out: VaultPoint[] = [];
    for (const m of await this.manifests(site)) {
      const v = await this.verificationOf(site, m.id);
      out.push({ ...summaryOf(m), ...(v ? { verification: v } : {}) });
    }
    return out;
  }

  async readManifest(site: string, id: string): Promise<PointManifest> {
    const file = this.pointFile(site, id);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch {
      throw new UnderstudyError('US_NOT_FOUND', `the vault holds no restore point ${id} of ${site}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UnderstudyError('US_INTERNAL', `${file}: not valid JSON: the restore point is damaged; remove it`);
    }
    const r = pointManifestSchema.safeParse(parsed);
    if (!r.success)
      throw new UnderstudyError(
        'US_INTERNAL',
        `${file}: invalid manifest (${r.error.issues[0]?.message ?? 'unknown'}): the restore point is damaged; remove it`,
      );
    return r.data;
  }

  /** Applies retention (see the class comment), then collects garbage. Runs inside the lock. */
  private async applyRetention(site: string, keep: number): Promise<void> {
    const ids = await this.ids(site);
    const bad = new Set<string>();
    for (const id of ids) if ((await this.verificationOf(site, id))?.ok === false) bad.add(id);
    const drop = retentionDrops(ids, bad, keep);
    for (const id of drop) {
      await removeDurable(this.pointFile(site, id));
      await fsp.rm(this.verificationFile(site, id), { force: true });
      this.log.info({ site, point: id, keep, failedVerification: bad.has(id) }, 'restore point removed by retention');
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

/**
 * Which points retention removes: `ids` newest first, `bad` those whose verification failed.
 * The newest `keep` points not in `bad` stay; so do bad points newer than the oldest of
 * them (at most `keep`, newest first); everything else goes.
 */
export function retentionDrops(ids: string[], bad: ReadonlySet<string>, keep: number): string[] {
  const kept = new Set<string>();
  let good = 0;
  let badKept = 0;
  for (const id of ids) {
    if (!bad.has(id)) {
      if (good < keep) {
        kept.add(id);
        good++;
      }
    } else if (good < keep && badKept < keep) {
      kept.add(id);
      badKept++;
    }
  }
  return ids.filter((id) => !kept.has(id));
}

export function summaryOf(m: PointManifest): VaultPoint {
  return { id: m.id, takenAt: m.takenAt, epoch: m.epoch, bytes: m.bytes, newBytes: m.newBytes, files: m.files.length };
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch {
    return [];
  }
}
