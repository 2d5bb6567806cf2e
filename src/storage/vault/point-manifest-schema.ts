import path from 'node:path';
import { z } from 'zod';
import { MAX_CHUNK_BYTES, isChunkHash } from './chunking.ts';
import { isPointId } from './point-id.ts';

/**
 * The wire and disk shape of a restore point's manifest (contracts' PointManifest),
 * checked wherever one arrives: at the vault on commit, at a target before a restore.
 * Paths must stay inside the volume; a file's chunk count must fit its size.
 */
const relPath = z
  .string()
  .min(1)
  .refine((p) => !path.isAbsolute(p) && !p.split('/').some((s) => s === '' || s === '.' || s === '..'), 'must be a relative path inside the volume');
const hash = z.string().refine(isChunkHash, 'must be a sha256 in lowercase hex');

export const pointFileSchema = z.object({
  path: relPath,
  kind: z.enum(['db', 'file']),
  size: z.number().int().nonnegative(),
  mode: z.number().int().min(0).max(0o7777),
  mtimeMs: z.number().nonnegative(),
  sha256: hash,
  chunks: z.array(hash),
});

export const pointManifestSchema = z
  .object({
    version: z.literal(1),
    site: z.string().min(1),
    id: z.string().refine(isPointId, 'must be a point id like 2025-03-01T12-00-05.123Z'),
    takenAt: z.number().int().nonnegative(),
    epoch: z.number().int().nonnegative(),
    source: z.string().min(1),
    chunkBytes: z.number().int().min(4096).max(MAX_CHUNK_BYTES),
    files: z.array(pointFileSchema),
    bytes: z.number().int().nonnegative(),
    newBytes: z.number().int().nonnegative(),
  })
  .superRefine((m, ctx) => {
    m.files.forEach((f, i) => {
      if (f.chunks.length !== Math.ceil(f.size / m.chunkBytes)) {
        ctx.addIssue({
          code: 'custom',
          path: ['files', i, 'chunks'],
          message: `${f.path}: ${f.chunks.length} chunks do not fit ${f.size} bytes in chunks of ${m.chunkBytes}`,
        });
      }
    });
    const total = m.files.reduce((a, f) => a + f.size, 0);
    if (total !== m.bytes) ctx.addIssue({ code: 'custom', path: ['bytes'], message: `is ${m.bytes}, but the files add up to ${total}` });
  });
