import { z } from 'zod';
import type { VaultHasResponse, VerificationResult } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { parseBody, type JsonRouter } from '../../shared/http-json.ts';
import { MAX_CHUNK_BYTES, isChunkHash } from './chunking.ts';
import { pointManifestSchema } from './point-manifest-schema.ts';
import type { VaultStore } from './vault-store.ts';

/**
 * The vault's endpoints (see contracts: VaultPoint, VaultHasRequest, VaultCommitRequest),
 * served by every storage processor but answered only by one whose config says
 * `backup: true`; any other answers 400 saying so.
 */
const SITE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const hashSchema = z.string().refine(isChunkHash, 'must be a sha256 in lowercase hex');
const hasSchema = z.object({ hashes: z.array(hashSchema).max(1_000_000) });
const commitSchema = z.object({ manifest: pointManifestSchema, keep: z.number().int().positive() });

export function registerVaultRoutes(r: JsonRouter, storageName: string, store: () => VaultStore | null): void {
  const vault = (): VaultStore => {
    const s = store();
    if (!s)
      throw new UnderstudyError(
        'US_NOT_CONFIGURED',
        `storage ${storageName} is not a vault: restore points go to the storage system with backup: true (sites.<site>.volume.backup.to)`,
      );
    return s;
  };
  const site = (p: Record<string, string>): string => {
    const s = p.site!;
    if (!SITE_RE.test(s)) throw new UnderstudyError('US_BAD_REQUEST', `"${s}" is not a site name (letters, digits, '.', '_', '-')`);
    return s;
  };
  const hash = (p: Record<string, string>): string => {
    const h = p.hash!;
    if (!isChunkHash(h)) throw new UnderstudyError('US_BAD_REQUEST', `"${h}" is not a chunk hash (sha256, lowercase hex)`);
    return h;
  };

  r.on('POST', '/v1/vault/:site/has', async (q): Promise<VaultHasResponse> => {
    site(q.params);
    return { missing: await vault().missing(parseBody(hasSchema, q.body).hashes) };
  });
  r.on('PUT', '/v1/vault/chunks/:hash', async (q) => {
    const h = hash(q.params);
    if (!Buffer.isBuffer(q.body)) throw new UnderstudyError('US_BAD_REQUEST', `chunk ${h}: send its bytes as application/octet-stream`);
    if (q.body.length > MAX_CHUNK_BYTES) throw new UnderstudyError('US_BAD_REQUEST', `chunk ${h}: ${q.body.length} bytes, more than ${MAX_CHUNK_BYTES}`);
    return { stored: await vault().putChunk(h, q.body) };
  });
  r.on('GET', '/v1/vault/chunks/:hash', async (q, res) => {
    const h = hash(q.params);
    const data = await vault().readChunk(h);
    if (!data) throw new UnderstudyError('US_NOT_FOUND', `the vault ${storageName} holds no chunk ${h}`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
    res.end(data);
  });
  r.on('POST', '/v1/vault/:site/points', (q) => {
    const b = parseBody(commitSchema, q.body);
    return vault().commit(site(q.params), b.manifest, b.keep);
  });
  r.on('GET', '/v1/vault/:site/points', (q) => vault().list(site(q.params)));
  r.on('GET', '/v1/vault/:site/points/:id', (q) => vault().readManifest(site(q.params), q.params.id!));
  // Verifies a stored point as a restore would and records the result (VaultPoint.verification).
  r.on('POST', '/v1/vault/:site/points/:id/verify', (q): Promise<VerificationResult> => vault().verifyPoint(site(q.params), q.params.id!));
}
