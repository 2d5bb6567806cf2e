import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { VerificationProblem, VerificationResult, VolumeRole } from '../../shared/contracts.ts';
import { tempPathFor } from '../fs-durable.ts';
import { listDatabases } from '../sqlite-file.ts';
import { checkFilesAgainstBaseline } from './file-baseline.ts';
import { quickCheck } from './quick-check.ts';

/**
 * Verifies one volume held by this storage processor:
 *  - databases: quick_check. On a primary, on the live file through a read-only
 *    connection (SQLite's locking makes that safe while the app writes). On a replica
 *    never on the live files — they are appended to by replication outside SQLite's
 *    locking — but on a copy of db + -wal taken while replication is held
 *    (`quiesce`, the processor's withVolumeQuiesced; the copy is the short part).
 *  - plain files: hashed against the previous verification (file-baseline.ts).
 */
export interface VerifyVolumeOptions {
  dir: string;
  role: VolumeRole;
  /** Runs fn while no replication write touches the volume; gets the volume's current dir. */
  quiesce: <T>(fn: (dir: string) => Promise<T>) => Promise<T>;
  baselineFile: string;
}

export async function verifyVolume(o: VerifyVolumeOptions): Promise<VerificationResult> {
  const t0 = performance.now();
  const problems: VerificationProblem[] = [];
  if (!fs.existsSync(o.dir)) {
    problems.push({ file: '.', kind: 'unreadable', detail: `${o.dir}: the volume directory does not exist` });
  } else if (o.role === 'replica') {
    problems.push(...(await checkReplicaDatabases(o)));
  } else {
    for (const rel of listDatabases(o.dir)) problems.push(...(await quickCheck(path.join(o.dir, rel), rel)));
  }
  if (fs.existsSync(o.dir)) problems.push(...(await checkFilesAgainstBaseline(o.dir, o.baselineFile)));
  return { ok: problems.length === 0, problems, checkedAt: Date.now(), ms: Math.round(performance.now() - t0) };
}

async function checkReplicaDatabases(o: VerifyVolumeOptions): Promise<VerificationProblem[]> {
  const tmp = tempPathFor(path.join(path.dirname(o.dir), `verify-${path.basename(o.dir)}`));
  const problems: VerificationProblem[] = [];
  try {
    const dbs = await o.quiesce(async (dir) => {
      const rels = listDatabases(dir);
      for (const rel of rels) {
        const to = path.join(tmp, rel);
        await fsp.mkdir(path.dirname(to), { recursive: true });
        try {
          await fsp.copyFile(path.join(dir, rel), to);
          await fsp.copyFile(`${path.join(dir, rel)}-wal`, `${to}-wal`).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== 'ENOENT') throw e;
          });
        } catch (e) {
          problems.push({ file: rel, kind: 'unreadable', detail: `cannot copy for checking: ${(e as Error).message}` });
        }
      }
      return rels;
    });
    for (const rel of dbs) if (fs.existsSync(path.join(tmp, rel))) problems.push(...(await quickCheck(path.join(tmp, rel), rel)));
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return problems;
}
