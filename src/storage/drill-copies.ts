import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { request } from 'undici';
import { z } from 'zod';
import type { VerificationProblem, VolumeRole } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { parseBody, type JsonRouter } from '../shared/http-json.ts';
import { applyTransform } from '../transform/index.ts';
import { renderedRuleSchema } from '../transform/rule-schema.ts';
import { isTempName } from './fs-durable.ts';
import { listDatabases } from './sqlite-file.ts';
import { quickCheck } from './vault/quick-check.ts';

/**
 * Drill copies: throwaway copies of a site's replica for a rehearsal (`understudy drill`).
 * They live apart from volumes, replicas, reader copies and the vault, and nothing
 * ever promotes, replicates or backs them up:
 *
 *   <storage>/drills/.out/<id>/   the snapshot, on the replica's storage system, until fetched
 *   <storage>/drills/<id>/        the copy a spare's app runs on (its DATA_DIR)
 *
 * The snapshot is taken while replication to the replica is held (the processor's volume
 * lock), by copying its databases with their WAL (a snapshot image plus a verbatim,
 * checksummed prefix of the primary's WAL: consistent at every instant) and its plain
 * files; the lock is held only for the file copy. The copy's WALs are then folded
 * (checkpoint) and every database quick_checked — as a promotion would — and the
 * replica itself is never opened by SQLite, written or moved.
 *
 *   POST   /v1/volumes/:site/drill-snapshot { id }  (replica side) → snapshot figures
 *   GET    /v1/drills/:id/manifest, GET /v1/drills/:id/file?path=  (replica side: what a fetch reads)
 *   POST   /v1/drills/:id/fetch { from: { name, url } }  (spare side: takes the snapshot, here or over HTTP)
 *   POST   /v1/drills/:id/transform { rules }  (spare side: fits the copy to the spare)
 *   DELETE /v1/drills/:id  (either side: removes both directories; idempotent)
 *   GET    /v1/drills  → { copies: [{ id, path, bytes }], snapshots: [...] }
 */
export interface DrillSnapshot {
  id: string;
  site: string;
  /** When the replica's files were copied (the copy's moment). */
  takenAt: number;
  /** When the replica last applied a batch from the primary, as of the copy (null: unknown since a restart). */
  lastAppliedAt: number | null;
  bytes: number;
  files: number;
  databases: string[];
  /** quick_check of every database of the copy (a promotion verifies the same way). */
  problems: VerificationProblem[];
  /** Time the replica was held (file copy only). */
  heldMs: number;
  ms: number;
}

export interface DrillHost {
  withVolumeQuiesced<T>(site: string, fn: (dir: string) => Promise<T>): Promise<T>;
  volumeInfo(site: string): { role: VolumeRole; lastAppliedAt: number | null } | undefined;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;
const snapshotSchema = z.object({ id: z.string().regex(ID_RE, 'must be a drill id (letters, digits, ., _, -)') }).strict();
const fetchSchema = z.object({ from: z.object({ name: z.string().min(1), url: z.string().url() }).strict() }).strict();
const transformSchema = z.object({ rules: z.array(renderedRuleSchema) }).strict();

export function drillCopyPath(storagePath: string, id: string): string {
  return path.join(storagePath, 'drills', id);
}

function snapshotPath(storagePath: string, id: string): string {
  return path.join(storagePath, 'drills', '.out', id);
}

function checkId(id: string): string {
  if (!ID_RE.test(id)) throw new UnderstudyError('US_BAD_REQUEST', `"${id}" is not a drill id (letters, digits, '.', '_', '-')`);
  return id;
}

export class DrillCopies {
  constructor(
    private readonly name: string,
    private readonly storagePath: string,
    private readonly log: Logger,
    private readonly host: DrillHost,
  ) {}

  register(r: JsonRouter): void {
    r.on('POST', '/v1/volumes/:site/drill-snapshot', (q) => this.snapshot(q.params.site!, parseBody(snapshotSchema, q.body).id));
    r.on('GET', '/v1/drills', () => this.list());
    r.on('GET', '/v1/drills/:id/manifest', (q) => this.manifest(checkId(q.params.id!)));
    r.on('GET', '/v1/drills/:id/file', (q, res) => this.sendFile(checkId(q.params.id!), q.query.get('path') ?? '', res));
    r.on('POST', '/v1/drills/:id/fetch', (q) => this.fetch(checkId(q.params.id!), parseBody(fetchSchema, q.body).from));
    r.on('POST', '/v1/drills/:id/transform', async (q) => {
      const dir = drillCopyPath(this.storagePath, checkId(q.params.id!));
      if (!fs.existsSync(dir)) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no drill copy ${q.params.id}`);
      return { changes: applyTransform(dir, parseBody(transformSchema, q.body).rules) };
    });
    r.on('DELETE', '/v1/drills/:id', (q) => this.remove(checkId(q.params.id!)));
  }

  /** Takes the snapshot of `site`'s replica held here into drills/.out/<id>. */
  async snapshot(site: string, id: string): Promise<DrillSnapshot> {
    const t0 = Date.now();
    const info = this.host.volumeInfo(site);
    if (!info) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no copy of ${site}`);
    if (info.role !== 'replica')
      throw new UnderstudyError(
        'US_VOLUME_ROLE',
        `the copy of ${site} on storage ${this.name} is ${info.role === 'primary' ? 'the primary' : 'not a replica'}: a drill copies the replica, never the primary`,
      );
    const out = snapshotPath(this.storagePath, id);
    await fsp.rm(out, { recursive: true, force: true });
    await fsp.mkdir(out, { recursive: true });
    let takenAt = 0;
    let lastAppliedAt: number | null = null;
    let heldMs = 0;
    try {
      await this.host.withVolumeQuiesced(site, async (dir) => {
        const held = Date.now();
        const now = this.host.volumeInfo(site);
        if (now?.role !== 'replica') throw new UnderstudyError('US_VOLUME_ROLE', `the copy of ${site} on storage ${this.name} stopped being a replica`);
        await copyTree(dir, out);
        takenAt = Date.now();
        lastAppliedAt = now.lastAppliedAt;
        heldMs = takenAt - held;
      });
      const databases = listDatabases(out);
      const problems: VerificationProblem[] = [];
      for (const rel of databases) {
        fold(path.join(out, rel));
        problems.push(...(await quickCheck(path.join(out, rel), rel)));
      }
      const { bytes, files } = await sizeOf(out);
      this.log.info({ site, id, bytes, heldMs }, 'drill snapshot of the replica taken');
      return { id, site, takenAt, lastAppliedAt, bytes, files, databases, problems, heldMs, ms: Date.now() - t0 };
    } catch (e) {
      await fsp.rm(out, { recursive: true, force: true });
      throw e;
    }
  }

  async manifest(id: string): Promise<{ files: { path: string; size: number; mode: number }[] }> {
    const dir = snapshotPath(this.storagePath, id);
    if (!fs.existsSync(dir)) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no drill snapshot ${id}`);
    const files: { path: string; size: number; mode: number }[] = [];
    await walk(dir, '', async (rel, st) => {
      files.push({ path: rel, size: st.size, mode: st.mode & 0o777 });
    });
    return { files };
  }

  private async sendFile(id: string, rel: string, res: http.ServerResponse): Promise<void> {
    const dir = snapshotPath(this.storagePath, id);
    const abs = path.resolve(dir, rel);
    if (!rel || !abs.startsWith(dir + path.sep)) throw new UnderstudyError('US_UNSAFE_PATH', `${rel}: not a file of drill snapshot ${id}`);
    let st: fs.Stats;
    try {
      st = await fsp.stat(abs);
    } catch {
      throw new UnderstudyError('US_NOT_FOUND', `drill snapshot ${id} has no file ${rel}`);
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
    await pipeline(fs.createReadStream(abs), res);
  }

  /** Puts the snapshot `id` in place as drills/<id> here: a rename when it was taken here, else a download. */
  async fetch(id: string, from: { name: string; url: string }): Promise<{ bytes: number; files: number; ms: number; path: string }> {
    const t0 = Date.now();
    const dest = drillCopyPath(this.storagePath, id);
    if (!fs.existsSync(dest)) {
      const tmp = `${dest}.incoming`;
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.mkdir(tmp, { recursive: true });
      try {
        if (from.name === this.name) {
          await fsp.rename(snapshotPath(this.storagePath, id), tmp).catch(async (e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT') throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no drill snapshot ${id}`);
            throw e;
          });
        } else {
          await download(from.url, id, tmp);
        }
        await fsp.rename(tmp, dest);
      } catch (e) {
        await fsp.rm(tmp, { recursive: true, force: true });
        throw e;
      }
    }
    const { bytes, files } = await sizeOf(dest);
    return { bytes, files, ms: Date.now() - t0, path: path.resolve(dest) };
  }

  async remove(id: string): Promise<{ removed: boolean }> {
    let removed = false;
    for (const dir of [drillCopyPath(this.storagePath, id), `${drillCopyPath(this.storagePath, id)}.incoming`, snapshotPath(this.storagePath, id)]) {
      if (fs.existsSync(dir)) {
        await fsp.rm(dir, { recursive: true, force: true });
        removed = true;
      }
    }
    return { removed };
  }

  async list(): Promise<{ copies: { id: string; path: string; bytes: number }[]; snapshots: { id: string; bytes: number }[] }> {
    const root = path.join(this.storagePath, 'drills');
    const entries = async (dir: string) =>
      fs.existsSync(dir) ? (await fsp.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && e.name !== '.out').map((e) => e.name) : [];
    const copies = await Promise.all(
      (await entries(root)).map(async (id) => ({ id, path: path.resolve(root, id), bytes: (await sizeOf(path.join(root, id))).bytes })),
    );
    const snapshots = await Promise.all(
      (await entries(path.join(root, '.out'))).map(async (id) => ({ id, bytes: (await sizeOf(path.join(root, '.out', id))).bytes })),
    );
    return { copies, snapshots };
  }
}

/** Copies a replica's files: databases with their WAL (no -shm: it is rebuilt), plain files; not our temp files. */
async function copyTree(from: string, to: string): Promise<void> {
  await walk(from, '', async (rel) => {
    if (rel.endsWith('-shm')) return;
    const dest = path.join(to, rel);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    await fsp.copyFile(path.join(from, rel), dest);
  });
}

async function walk(root: string, rel: string, fn: (rel: string, st: fs.Stats) => Promise<void>): Promise<void> {
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (isTempName(e.name)) continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) {
      await walk(root, r, fn);
      continue;
    }
    if (!e.isFile()) continue;
    await fn(r, await fsp.stat(path.join(root, r)));
  }
}

async function sizeOf(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  await walk(dir, '', async (_rel, st) => {
    bytes += st.size;
    files++;
  });
  return { bytes, files };
}

/** Folds a copied database's WAL into it, as a promotion does; the copy stays in WAL mode. */
function fold(file: string): void {
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    // quick_check reports a database that cannot be opened.
  } finally {
    try {
      db?.close();
    } catch {
      /* already broken */
    }
  }
}

/** Downloads snapshot `id` from the storage processor at `url` into `dir`. */
async function download(url: string, id: string, dir: string): Promise<void> {
  const m = await request(`${url}/v1/drills/${encodeURIComponent(id)}/manifest`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  if (m.statusCode !== 200)
    throw new UnderstudyError('US_UNREACHABLE', `${url}: drill snapshot ${id} manifest answered ${m.statusCode}: ${(await m.body.text()).slice(0, 200)}`);
  const { files } = (await m.body.json()) as { files: { path: string; size: number; mode: number }[] };
  for (const f of files) {
    const dest = path.resolve(dir, f.path);
    if (!dest.startsWith(dir + path.sep)) throw new UnderstudyError('US_UNSAFE_PATH', `${f.path}: not a path inside the drill copy`);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    const res = await request(`${url}/v1/drills/${encodeURIComponent(id)}/file?path=${encodeURIComponent(f.path)}`, {
      headersTimeout: 10_000,
      bodyTimeout: 60_000,
    });
    if (res.statusCode !== 200) throw new UnderstudyError('US_UNREACHABLE', `${url}: ${f.path} of drill snapshot ${id} answered ${res.statusCode}`);
    await pipeline(res.body, fs.createWriteStream(dest, { mode: f.mode }));
  }
}
