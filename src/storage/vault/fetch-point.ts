import fsp from 'node:fs/promises';
import type { Logger } from 'pino';
import type { PointManifest, RestoreProgress, VerificationProblem } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { pointManifestSchema } from './point-manifest-schema.ts';
import { rebuildPoint } from './rebuild-point.ts';
import type { VaultClient } from './vault-client.ts';

/**
 * The fetching half of a restore, on the target storage processor: rebuilds a point
 * from the vault into `intoDir` and verifies it (chunk hashes, file hashes,
 * quick_check). `point` is an id, or 'latest-good': the site's points newest first,
 * the first that verifies wins and the ones skipped are reported with their problems.
 * On success `intoDir` holds exactly the point's files; on failure it is removed and
 * the error says what was wrong with every point tried.
 */
export const LATEST_GOOD = 'latest-good';

export interface FetchPointOptions {
  site: string;
  point: string;
  vault: VaultClient;
  intoDir: string;
  log: Logger;
  onProgress: (p: RestoreProgress) => void;
}

export interface FetchedPoint {
  manifest: PointManifest;
  skipped: { id: string; problems: VerificationProblem[] }[];
}

export async function fetchVerifiedPoint(o: FetchPointOptions): Promise<FetchedPoint> {
  const listed = o.point === LATEST_GOOD ? await o.vault.points(o.site) : [];
  const ids = o.point === LATEST_GOOD ? listed.map((p) => p.id) : [o.point];
  if (ids.length === 0) throw new UnderstudyError('US_NOT_FOUND', `the vault at ${o.vault.url} holds no restore point of ${o.site}: nothing to restore`);
  const skipped: FetchedPoint['skipped'] = [];
  for (const id of ids) {
    // 'latest-good' passes over points the vault already found bad (VaultPoint.verification).
    const known = listed.find((p) => p.id === id)?.verification;
    if (known?.ok === false) {
      skipped.push({
        id,
        problems: [
          {
            file: `${id}`,
            kind: 'checksum',
            detail: `failed the vault's verification at ${new Date(known.checkedAt).toISOString()}: ${known.problem ?? 'see the vault log'}`,
          },
        ],
      });
      continue;
    }
    await fsp.rm(o.intoDir, { recursive: true, force: true });
    let manifest: PointManifest;
    try {
      manifest = await readManifest(o, id);
    } catch (e) {
      // A damaged manifest is a bad point, not the end of 'latest-good'; an unreachable vault is.
      if (e instanceof UnderstudyError && (e.code === 'US_UNREACHABLE' || e.code === 'US_TIMEOUT')) throw e;
      skipped.push({ id, problems: [{ file: `${id}.json`, kind: 'unreadable', detail: (e as Error).message }] });
      if (o.point !== LATEST_GOOD) break;
      continue;
    }
    o.onProgress({ state: 'fetching', point: id, bytesDone: 0, bytesTotal: manifest.bytes });
    o.log.info({ site: o.site, point: id, bytes: manifest.bytes, vault: o.vault.url }, 'restore: fetching point');
    const problems = await rebuildPoint(manifest, { get: (h) => o.vault.getChunk(h) }, o.intoDir, {
      failFast: true,
      onProgress: (bytesDone) => o.onProgress({ state: 'fetching', point: id, bytesDone, bytesTotal: manifest.bytes }),
    });
    if (problems.length === 0) {
      o.onProgress({ state: 'verifying', point: id, bytesDone: manifest.bytes, bytesTotal: manifest.bytes });
      return { manifest, skipped };
    }
    o.log.warn({ site: o.site, point: id, problems }, 'restore: point failed verification');
    skipped.push({ id, problems });
    // The vault checks it itself and records the result, so retention stops counting it (not awaited).
    void o.vault.verifyPoint(o.site, id).catch(() => undefined);
    if (o.point !== LATEST_GOOD) break;
  }
  await fsp.rm(o.intoDir, { recursive: true, force: true });
  const why = skipped.map((s) => `${s.id}: ${s.problems[0]?.file} ${s.problems[0]?.kind} (${s.problems[0]?.detail})`).join('; ');
  throw new UnderstudyError(
    'US_POINT_UNVERIFIED',
    `no restore point of ${o.site} verifies (${why}): verify the vault's points (POST /v1/vault/${o.site}/points/:id/verify)`,
    { skipped },
  );
}

async function readManifest(o: FetchPointOptions, id: string): Promise<PointManifest> {
  const raw = await o.vault.manifest(o.site, id);
  const r = pointManifestSchema.safeParse(raw);
  if (!r.success)
    throw new UnderstudyError(
      'US_POINT_UNVERIFIED',
      `restore point ${o.site}/${id} from ${o.vault.url} has an invalid manifest: ${r.error.issues[0]?.message ?? 'unknown'}`,
    );
  if (r.data.site !== o.site)
    throw new UnderstudyError('US_POINT_UNVERIFIED', `restore point ${id} from ${o.vault.url} is of site ${r.data.site}, not ${o.site}`);
  return r.data;
}
