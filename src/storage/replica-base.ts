import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, isTempName, tempPathFor } from './fs-durable.ts';
import { FileManifest } from './file-manifest.ts';
import { hasSqliteMagic } from './sqlite-file.ts';
import { replicaPath, volumePath } from './volume-meta.ts';

/**
 * Older copies of a site's volume that a storage system may already hold when it
 * becomes the replica target again (failback, re-protection after a failover), from
 * which a new replication generation needs only what differs:
 *
 *  1. the replica itself (`replicas/<site>`): it was being shipped to before;
 *  2. the stale copy in `volumes/<site>`: this storage system held the primary copy
 *     before a failover and keeps it untouched (an old primary's app that comes back
 *     by itself may still write to it — a torn or newer read is harmless, see below);
 *  3. copies moved aside at a promotion or restore (`stale/<site>-epochN-TIME[-replica]`),
 *     newest first.
 *
 * These copies are only ever *read*, and only as a starting point: a database base is
 * copied aside first and the rebuilt image is checked against the source's size and
 * sha256 before it replaces anything (ReplicaDbWriter), and seeded plain files are
 * compared by checksum with the source's by the file shipper, which sends whatever
 * differs. So a base can make a generation cheaper, never wrong.
 */
export function baseVolumeDirs(storagePath: string, site: string): string[] {
  const out = [replicaPath(storagePath, site), volumePath(storagePath, site)];
  const staleRoot = path.join(storagePath, 'stale');
  let names: string[] = [];
  try {
    names = fs.readdirSync(staleRoot);
  } catch {
    /* no stale copies */
  }
  const re = new RegExp(`^${site.replace(/[.]/g, '\\.')}-epoch(\\d+)-(\\d+)(-replica)?$`);
  const stale = names
    .map((n) => ({ n, m: re.exec(n) }))
    .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null)
    .sort((x, y) => Number(y.m[2]) - Number(x.m[2]) || Number(y.m[1]) - Number(x.m[1]))
    .map((x) => path.join(staleRoot, x.n));
  return [...out, ...stale];
}

/** The first base copy of database `rel` (an SQLite file) among `dirs`, or null. */
export function findBaseDatabase(dirs: readonly string[], rel: string): string | null {
  for (const d of dirs) {
    const f = path.join(d, rel);
    try {
      if (fs.statSync(f).isFile() && hasSqliteMagic(f)) return f;
    } catch {
      /* not there */
    }
  }
  return null;
}

/**
 * Seeds an empty replica directory with the plain files (not databases, not temp
 * files) of the first base copy among `dirs` that has any, so that the file shipper,
 * which compares checksums with what the replica holds (hello), sends only the files
 * that differ. Each file is copied to a temp name and renamed; the directories are
 * fsynced at the end. Returns the base used and the number of files copied; does
 * nothing when the replica already holds any file or database.
 */
export async function seedReplicaFiles(replicaDir: string, dirs: readonly string[]): Promise<{ from: string; files: number } | null> {
  // Anything in it but our temp files (a replica already being written): leave it alone.
  let entries: string[] = [];
  try {
    entries = await fsp.readdir(replicaDir);
  } catch {
    /* not there yet: empty */
  }
  if (entries.some((n) => !isTempName(n))) return null;
  for (const from of dirs) {
    if (path.resolve(from) === path.resolve(replicaDir) || !fs.existsSync(from)) continue;
    const files = await new FileManifest(from).scan();
    if (files.size === 0) continue;
    const touched = new Set<string>([replicaDir]);
    let n = 0;
    for (const rel of [...files.keys()].sort()) {
      if (rel.split('/').some(isTempName)) continue;
      const dst = path.join(replicaDir, rel);
      await fsp.mkdir(path.dirname(dst), { recursive: true });
      const tmp = tempPathFor(dst);
      try {
        await fsp.copyFile(path.join(from, rel), tmp);
        const h = await fsp.open(tmp, 'r+');
        try {
          await h.sync();
        } finally {
          await h.close();
        }
        await fsp.rename(tmp, dst);
      } catch {
        await fsp.rm(tmp, { force: true }); // gone or unreadable: the shipper sends it
        continue;
      }
      touched.add(path.dirname(dst));
      n++;
    }
    for (const d of touched) await fsyncDir(d);
    return { from, files: n };
  }
  return null;
}
