import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { VerificationProblem } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { isTempName } from '../fs-durable.ts';
import { hasSqliteMagic, isDatabaseArtifact, listDatabases } from '../sqlite-file.ts';
import type { ShippedState } from '../db-shipper.ts';
import { pageProblem } from '../page-record.ts';
import { checkLiveWal, type WalEnd } from '../wal-chain-check.ts';
import { quickCheckImage } from './quick-check.ts';

/**
 * A consistent image of a live volume, for a restore point.
 *
 * Databases: `db.serialize()` inside a read transaction on a read-only connection.
 * The read transaction pins one committed state (WAL mode: the app keeps writing and
 * checkpointing; our reader only holds the WAL's read mark for the copy's duration),
 * and serialize() copies the pages of that state through SQLite's pager, page for page.
 * Chosen over the alternatives because:
 *  - `VACUUM INTO` rebuilds the database: pages move, so unchanged data lands in
 *    changed chunks and content-addressed deduplication is lost;
 *  - the online backup API restarts whenever another connection writes during the
 *    copy, and under a steady stream of orders it may never finish;
 *  - copying the file ourselves would race the app's checkpoints (they write the db file).
 * The cost: the image is held in memory (a shop's orders.db: tens of MB). Each database
 * is consistent in itself; two databases are not captured at one instant (the shop
 * keeps no cross-database invariants). A read-only connection never checkpoints,
 * so taking a point does not change the volume.
 *
 * Plain files (everything except databases, their -wal/-shm/-journal and our temp
 * files): read as they are; they are replaced whole (temp + rename) by the app and by
 * transforms, so a read sees one version.
 */
export interface CapturedFile {
  path: string;
  kind: 'db' | 'file';
  mode: number;
  mtimeMs: number;
  data: Buffer;
}

/**
 * What the storage processor knows of a database of the volume: what its shipper shipped
 * and the replica confirmed (`state`, with the page record there), or the position
 * confirmed in an earlier run (`known`). Without it, a capture can only trust SQLite.
 */
export interface CaptureKnowledge {
  state: ShippedState | null;
  known: WalEnd | null;
}

export async function captureVolume(dir: string, knowledge?: (rel: string) => CaptureKnowledge): Promise<CapturedFile[]> {
  if (!fs.existsSync(dir))
    throw new UnderstudyError('US_NOT_FOUND', `${dir}: the volume does not exist`, {
      problem: { file: '.', kind: 'unreadable', detail: `${dir}: the volume directory does not exist` } satisfies VerificationProblem,
    });
  const out: CapturedFile[] = [];
  for (const rel of listDatabases(dir)) out.push(await captureDatabase(dir, rel, knowledge?.(rel)));
  await walkFiles(dir, '', out);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

async function captureDatabase(dir: string, rel: string, knowledge?: CaptureKnowledge): Promise<CapturedFile> {
  const abs = path.join(dir, rel);
  const st = fs.statSync(abs);
  let db: Database.Database | null = null;
  try {
    refuseLostWal(abs, rel);
    db = new Database(abs, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM sqlite_master').get(); // starts the read: the state is fixed from here
    const data = db.serialize();
    // Still inside the read transaction (the WAL cannot restart under it): the image must not
    // come from a damaged WAL, nor from one SQLite already recovered short. See copyDamage.
    const damage = await copyDamage(abs, rel, data, knowledge);
    db.exec('COMMIT');
    if (damage.length > 0)
      throw new UnderstudyError('US_VOLUME_DAMAGED', `${abs}: ${damage.map((p) => `${p.file}: ${p.detail}`).join('; ')}; no restore point is taken of it`, {
        problem: damage[0],
        problems: damage,
      });
    // Removed while it was copied (an rm -rf under way): the image may lack what the WAL held.
    refuseLostWal(abs, rel);
    if (!fs.existsSync(abs))
      throw new UnderstudyError('US_NOT_FOUND', `${abs}: removed while a restore point was taken`, {
        problem: { file: rel, kind: 'unreadable', detail: 'removed while a restore point was taken' } satisfies VerificationProblem,
      });
    // A restore point of a damaged database would push good points out of retention: check
    // the image itself (in memory) and refuse it, so that the vault keeps only points that verify.
    const problem = await imageProblem(data, rel);
    // The refusal is also a verification of the primary (a quick_check of a consistent image): `problem` lets the caller raise it at once.
    if (problem)
      throw new UnderstudyError('US_VOLUME_DAMAGED', `${abs}: the database is damaged (quick_check: ${problem}); no restore point is taken of it`, {
        problem: { file: rel, kind: 'quick-check', detail: problem } satisfies VerificationProblem,
      });
    return { path: rel, kind: 'db', mode: st.mode & 0o777, mtimeMs: st.mtimeMs, data };
  } catch (e) {
    if (e instanceof UnderstudyError) throw e;
    throw new UnderstudyError('US_SNAPSHOT_UNAVAILABLE', `${abs}: cannot take a consistent copy of the database (${(e as Error).message})`);
  } finally {
    db?.close();
  }
}

/**
 * A WAL-mode database whose `-shm` index exists but whose `-wal` does not has lost its WAL
 * (a file removed by hand, an `rm -rf` of the volume under way): SQLite then reads the db file
 * alone, a consistent but OLDER state that passes quick_check (measured: 100 committed rows
 * read as 0). Such an image must not become the newest "good" point. (A clean close of the
 * last connection removes both files; a crash leaves both.)
 */
function refuseLostWal(abs: string, rel: string): void {
  if (fs.existsSync(`${abs}-shm`) && !fs.existsSync(`${abs}-wal`)) {
    const detail = `${rel}-wal is missing while ${rel}-shm exists: the database lost its write-ahead log (committed writes)`;
    throw new UnderstudyError('US_VOLUME_DAMAGED', `${abs}: ${detail}; no restore point is taken of it`, {
      problem: { file: rel, kind: 'unreadable', detail } satisfies VerificationProblem,
    });
  }
}

async function walkFiles(root: string, rel: string, out: CapturedFile[]): Promise<void> {
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (isTempName(e.name)) continue;
    if (e.isDirectory()) {
      await walkFiles(root, r, out);
      continue;
    }
    const abs = path.join(root, r);
    if (!e.isFile() || isDatabaseArtifact(r) || hasSqliteMagic(abs)) continue; // databases are captured above, whatever their name
    let st: fs.Stats;
    let data: Buffer;
    try {
      st = await fsp.stat(abs);
      data = await fsp.readFile(abs);
    } catch {
      continue;
    } // deleted meanwhile
    out.push({ path: r, kind: 'file', mode: st.mode & 0o777, mtimeMs: st.mtimeMs, data });
  }
}

/**
 * The image is a consistent state, and quick_check would pass it, even when the copy is
 * damaged at rest: SQLite reads committed frames through its WAL index without verifying
 * them, and a copy that was opened fresh after damage (a restart) reads as a shorter,
 * consistent history. So before an image may become a restore point, the WAL must hold
 * every committed frame and what was shipped and confirmed, verbatim (wal-chain-check.ts),
 * and every page of the image that no WAL frame supersedes must be the page that was
 * shipped (page-record.ts: such a page was read from the db file, which has not changed
 * since the WAL began). Empty when all is well, or nothing is known to compare with.
 */
async function copyDamage(abs: string, rel: string, image: Buffer, k: CaptureKnowledge | undefined): Promise<VerificationProblem[]> {
  const state = k?.state ?? null;
  const chain = checkLiveWal(abs, rel, state?.end ?? k?.known ?? null);
  if (!chain.conclusive) return [];
  const problems = [...chain.problems];
  const record = state?.record;
  if (
    record &&
    chain.shadowed &&
    chain.salts &&
    chain.salts[0] === state.end.salt1 &&
    chain.salts[1] === state.end.salt2 &&
    image.length % record.pageSize === 0
  ) {
    // The record as it is now, with the chain just read: the shipper applies frames to the
    // live record while the image's pages are hashed.
    const bad = await record.clone().differingOffLoop(image, 1, chain.shadowed);
    if (bad.length > 0) problems.push(pageProblem(rel, bad, record.pageSize));
  }
  return problems;
}

/** null when the serialized database passes `quick_check` (on the checking thread), else the first complaint. */
async function imageProblem(image: Buffer, rel: string): Promise<string | null> {
  const problems = await quickCheckImage(image, rel, 1);
  return problems[0]?.detail ?? null;
}
