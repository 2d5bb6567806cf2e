import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ReaderCopyStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { parseBody, type JsonRouter } from '../shared/http-json.ts';
import { applyTransform } from '../transform/index.ts';
import { renderedRuleSchema } from '../transform/rule-schema.ts';
import { applyFiles, replicaManifest, safeVolumePath } from './file-sync.ts';
import { fsyncDir, TEMP_PREFIX } from './fs-durable.ts';
import { KeyedLock } from './keyed-lock.ts';
import { ReplicaDbWriter } from './replica-db-writer.ts';
import { checkDbRel } from './replica-routes.ts';
import { binaryRequest, filesSchema, framesRequest, helloSchema, snapshotChunkSchema, snapshotCommitSchema } from './replica-protocol.ts';

/**
 * Reader copies: the destination side of a read-only copy of a site's
 * `volume.readonly` portion, held on the storage system a reader host is attached to.
 * It is a separate copy, apart from the site's volume and replica:
 *
 *   <storage>/readers/<site>/            what the reader's app serves (its DATA_DIR)
 *   <storage>/readers/.incoming/<site>/  the shipped databases (snapshot + verbatim WAL)
 *
 * It is never promotable (there is no promote for it), never a replication source
 * (nothing ships from it) and never the site's volume: a failover never looks here.
 *
 * Why two directories: the shipped database is "an image plus a verbatim prefix of
 * the source's WAL" written by ReplicaDbWriter without SQLite. An app holding the
 * database open would trust its own (stale) WAL index and never see appended frames,
 * and a WAL fold under an open connection could lose frames. So the app never opens
 * the shipped database: after every snapshot and every batch of frames, the database
 * is *published*: a consistent image is taken (`VACUUM INTO`, from a fresh read-only
 * connection that rebuilds the WAL index from the file), put in rollback-journal
 * mode, fsynced and renamed over `readers/<site>/<db>`. The read-only app notices
 * the new file (another inode) and reopens it (examples/shop/server.js). The batch
 * is acknowledged to the source only after it is published, so "acknowledged" means
 * "served": the source's catch-up barrier (read your writes) rests on that.
 *
 * Plain files (`public/`) are written straight into the served directory, each
 * atomically (temp + rename), as for a replica. `config/` is not in the portion: the
 * controller fits `config/site.json` to the reader host with `transform`, and the
 * shipper never deletes what is outside the portion.
 *
 * Epochs: a copy remembers the highest epoch it accepted (in memory); a request with
 * a lower one is refused (409 US_STALE_EPOCH), so a deposed primary's storage cannot
 * feed a reader. After a restart of this processor the first hello sets it again.
 */

const epochSchema = z.number().int().nonnegative();
const transformSchema = z.object({ epoch: epochSchema, rules: z.array(renderedRuleSchema) });
const epochOnly = z.object({ epoch: epochSchema });
const SITE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

interface ReaderCopy {
  site: string;
  epoch: number;
  source: string | null;
  writers: Map<string, ReplicaDbWriter>;
  /** When the last batch was published (epoch ms); null before the first. */
  publishedAt: number | null;
  /** Databases published at least once (relative paths). */
  published: Set<string>;
}

export function readerCopyPath(storagePath: string, site: string): string {
  return path.join(storagePath, 'readers', site);
}

export function readerIncomingPath(storagePath: string, site: string): string {
  return path.join(storagePath, 'readers', '.incoming', site);
}

export class ReaderCopies {
  private readonly copies = new Map<string, ReaderCopy>();
  private readonly lock = new KeyedLock();

  /** @param seedOf the site's seed directory (`app.seed`): where files the transform needs but the portion lacks start from. */
  constructor(
    private readonly storagePath: string,
    private readonly name: string,
    private readonly log: Logger,
    private readonly seedOf: (site: string) => string | undefined = () => undefined,
  ) {}

  status(): ReaderCopyStatus[] {
    return [...this.copies.values()]
      .sort((a, b) => a.site.localeCompare(b.site))
      .map((c) => ({
        site: c.site,
        epoch: c.epoch,
        source: c.source,
        path: path.resolve(readerCopyPath(this.storagePath, c.site)),
        publishedAt: c.publishedAt,
        databases: [...c.published].sort(),
      }));
  }

  register(r: JsonRouter): void {
    r.on('POST', '/v1/reader/:site/hello', (q) => {
      const b = parseBody(helloSchema, q.body);
      return this.op(q.params.site!, b.epoch, async (c) => {
        c.source = b.from;
        return { files: await replicaManifest(readerCopyPath(this.storagePath, c.site)) };
      });
    });
    r.on('POST', '/v1/reader/:site/snapshot/chunk', (q) => {
      const { meta: b, data } = binaryRequest(snapshotChunkSchema, q);
      return this.op(q.params.site!, b.epoch, async (c) => {
        await this.writer(c, b.db).snapshotChunk(b.generation, b.part, b.offset, data);
        return { ok: true };
      });
    });
    // A reader copy is always seeded with full images: no base for a differential one.
    r.on('POST', '/v1/reader/:site/snapshot/base', () => ({ base: null }));
    r.on('POST', '/v1/reader/:site/snapshot/commit', (q) => {
      const b = parseBody(snapshotCommitSchema, q.body);
      if (b.diff || (b as { walEncoding?: string }).walEncoding)
        throw new UnderstudyError('US_BAD_REQUEST', 'a reader copy takes full, unencoded snapshot images only');
      return this.op(q.params.site!, b.epoch, async (c) => {
        const lastFrame = await this.writer(c, b.db).snapshotCommit(b.generation, b.dbSize, b.dbSha256, b.walSize);
        await this.publish(c, b.db);
        return { lastFrame };
      });
    });
    r.on('POST', '/v1/reader/:site/frames', (q) => {
      const { meta: b, newWal, frames } = framesRequest(q);
      return this.op(q.params.site!, b.epoch, async (c) => {
        const lastFrame = await this.writer(c, b.db).appendFrames(b.generation, newWal, b.firstIndex, frames);
        await this.publish(c, b.db);
        return { lastFrame };
      });
    });
    r.on('POST', '/v1/reader/:site/files', (q) => {
      const b = parseBody(filesSchema, q.body);
      return this.op(q.params.site!, b.epoch, async (c) => {
        await applyFiles(readerCopyPath(this.storagePath, c.site), b);
        c.publishedAt = Date.now();
        return { ok: true };
      });
    });
    // The controller fits config/site.json (outside the portion) to the reader host.
    r.on('POST', '/v1/readers/:site/transform', (q) => {
      const b = parseBody(transformSchema, q.body);
      return this.op(q.params.site!, b.epoch, async (c) => {
        const dir = readerCopyPath(this.storagePath, c.site);
        // A file outside the portion (config/site.json) starts from the site's seed, then is fitted.
        const seed = this.seedOf(c.site);
        for (const rule of b.rules) {
          const target = safeVolumePath(dir, rule.file);
          const from = seed ? safeVolumePath(seed, rule.file) : null;
          if (!fs.existsSync(target) && from && fs.existsSync(from)) {
            await fsp.mkdir(path.dirname(target), { recursive: true });
            await fsp.copyFile(from, target);
          }
        }
        return { changes: applyTransform(dir, b.rules) };
      });
    });
    r.on('GET', '/v1/readers/:site', (q) => {
      const c = this.copies.get(checkSite(q.params.site!));
      if (!c) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no reader copy of ${q.params.site}`);
      return this.status().find((s) => s.site === c.site);
    });
    // Scale-in: the copy is deleted (it is only ever a copy of the primary's portion).
    r.on('POST', '/v1/readers/:site/drop', (q) => {
      const b = parseBody(epochOnly, q.body);
      return this.drop(q.params.site!, b.epoch);
    });
  }

  /** Deletes the reader copy of `site` (idempotent). Refuses an epoch lower than the copy's. */
  drop(site: string, epoch: number): Promise<{ dropped: boolean }> {
    checkSite(site);
    return this.lock.run(site, async () => {
      const c = this.copies.get(site);
      if (c && epoch < c.epoch)
        throw new UnderstudyError('US_STALE_EPOCH', `drop of the reader copy of ${site} carries epoch ${epoch}, but it holds epoch ${c.epoch}`, {
          epoch: c.epoch,
        });
      for (const w of c?.writers.values() ?? []) w.reset();
      this.copies.delete(site);
      const dirs = [readerCopyPath(this.storagePath, site), readerIncomingPath(this.storagePath, site)];
      const existed = dirs.some((d) => fs.existsSync(d));
      for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
      if (existed) this.log.info({ site }, 'reader copy dropped');
      return { dropped: existed };
    });
  }

  private op<T>(site: string, epoch: number, fn: (c: ReaderCopy) => Promise<T>): Promise<T> {
    checkSite(site);
    return this.lock.run(site, async () => {
      let c = this.copies.get(site);
      if (c && epoch < c.epoch) {
        throw new UnderstudyError('US_STALE_EPOCH', `the reader copy of ${site} on storage ${this.name} has seen epoch ${c.epoch}; refused epoch ${epoch}`, {
          epoch: c.epoch,
        });
      }
      if (!c) {
        c = { site, epoch, source: null, writers: new Map(), publishedAt: null, published: new Set() };
        this.copies.set(site, c);
      }
      if (epoch > c.epoch) {
        // A newer primary feeds this copy: what was being shipped belongs to the old one.
        for (const w of c.writers.values()) w.reset();
        c.epoch = epoch;
      }
      await fsp.mkdir(readerCopyPath(this.storagePath, site), { recursive: true });
      await fsp.mkdir(readerIncomingPath(this.storagePath, site), { recursive: true });
      return fn(c);
    });
  }

  private writer(c: ReaderCopy, db: string): ReplicaDbWriter {
    const rel = checkDbRel(db);
    let w = c.writers.get(rel);
    if (!w) {
      w = new ReplicaDbWriter(readerIncomingPath(this.storagePath, c.site), rel);
      c.writers.set(rel, w);
    }
    return w;
  }

  /**
   * Publishes the shipped database `rel` to the served directory: a consistent image
   * (VACUUM INTO from a fresh read-only connection) in rollback-journal mode, fsynced,
   * renamed over the served file. The read-only connection never checkpoints, so the
   * shipped WAL stays a verbatim prefix of the source's.
   */
  private async publish(c: ReaderCopy, db: string): Promise<void> {
    const rel = checkDbRel(db);
    const src = path.join(readerIncomingPath(this.storagePath, c.site), rel);
    const dest = path.join(readerCopyPath(this.storagePath, c.site), rel);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    const tmp = path.join(path.dirname(dest), `${TEMP_PREFIX}${path.basename(dest)}-publish-${process.pid}-${Date.now()}`);
    try {
      const from = new Database(src, { readonly: true, fileMustExist: true });
      try {
        from.prepare('VACUUM INTO ?').run(tmp);
      } finally {
        from.close();
      }
      const out = new Database(tmp, { fileMustExist: true });
      try {
        out.pragma('journal_mode = DELETE');
      } finally {
        out.close();
      }
      const h = await fsp.open(tmp, 'r+');
      try {
        await h.sync();
      } finally {
        await h.close();
      }
      await fsp.rename(tmp, dest);
      await fsyncDir(path.dirname(dest));
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw new UnderstudyError('US_REPLICATION', `cannot publish ${rel} to the reader copy of ${c.site}: ${(e as Error).message}`);
    }
    c.published.add(rel);
    c.publishedAt = Date.now();
  }
}

function checkSite(site: string): string {
  if (!SITE_RE.test(site)) throw new UnderstudyError('US_BAD_REQUEST', `"${site}" is not a site name (letters, digits, '.', '_', '-')`);
  return site;
}
