import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { VolumeRole } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { writeFileDurable } from './fs-durable.ts';

/**
 * What a storage processor remembers about a volume across restarts, in
 * `<storage.path>/meta/<site>.json`. `epoch` is the highest epoch this processor has
 * accepted for the site: anything carrying a lower one is refused (fencing).
 */
export interface VolumeMeta {
  site: string;
  role: VolumeRole;
  epoch: number;
  /** Set on a primary that ships to a replica: it resumes shipping after a restart. */
  replicateTo?: { name: string; url: string };
  /** On a replica: the storage system that ships to it. */
  source?: string;
  updatedAt: number;
}

const metaSchema = z.object({
  site: z.string(),
  role: z.enum(['primary', 'replica', 'none']),
  epoch: z.number().int().nonnegative(),
  replicateTo: z.object({ name: z.string(), url: z.string() }).optional(),
  source: z.string().optional(),
  updatedAt: z.number(),
});

export function metaPath(storagePath: string, site: string): string {
  return path.join(storagePath, 'meta', `${site}.json`);
}

export function volumePath(storagePath: string, site: string): string {
  return path.join(storagePath, 'volumes', site);
}

/**
 * Where a replica is kept: apart from `volumes/<site>`, so that a copy this storage
 * system held as primary before a failover stays where its old host would look for
 * it. An old primary whose app comes back by itself then writes only to its own
 * stale copy, never into the replica. A promotion moves the replica into
 * `volumes/<site>` and the stale copy aside to `stale/`.
 */
export function replicaPath(storagePath: string, site: string): string {
  return path.join(storagePath, 'replicas', site);
}

/** Where a stale primary copy is kept once a promotion replaces it. */
export function stalePath(storagePath: string, site: string, epoch: number): string {
  return path.join(storagePath, 'stale', `${site}-epoch${epoch}-${Date.now()}`);
}

/** Reads every meta file; a corrupt one is an error naming the file (never silently dropped). */
export function loadAllMeta(storagePath: string): VolumeMeta[] {
  const dir = path.join(storagePath, 'meta');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: VolumeMeta[] = [];
  for (const n of names.filter((n) => n.endsWith('.json')).sort()) {
    const file = path.join(dir, n);
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UnderstudyError('US_INTERNAL', `${file}: cannot read volume meta (${(e as Error).message}): fix or remove the file`);
    }
    const r = metaSchema.safeParse(parsed);
    if (!r.success)
      throw new UnderstudyError('US_INTERNAL', `${file}: invalid volume meta: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    out.push(r.data);
  }
  return out;
}

export async function saveMeta(storagePath: string, meta: VolumeMeta): Promise<void> {
  await writeFileDurable(metaPath(storagePath, meta.site), `${JSON.stringify(meta, null, 2)}\n`);
}
