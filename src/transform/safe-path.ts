import fs from 'node:fs';
import path from 'node:path';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * Resolves `file` (relative) inside `dir`, refusing anything that would land
 * outside it: absolute paths, `..`, and symbolic links that point out of `dir`.
 */
export function resolveInside(dir: string, file: string): string {
  const refuse = (why: string): never => {
    throw new UnderstudyError('US_UNSAFE_PATH', `transform file ${JSON.stringify(file)} ${why}`, { file });
  };
  if (file === '' || path.isAbsolute(file)) refuse('must be a path relative to the volume');
  const root = path.resolve(dir);
  const target = path.resolve(root, file);
  const rel = path.relative(root, target);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) refuse('is outside the volume');

  // Follow symlinks of whatever part of the path already exists.
  const realRoot = fs.realpathSync(root);
  let existing = target;
  while (!fs.existsSync(existing) && existing !== root) existing = path.dirname(existing);
  const realRel = path.relative(realRoot, fs.realpathSync(existing));
  if (realRel.startsWith('..') || path.isAbsolute(realRel)) refuse('leads outside the volume through a symbolic link');
  return target;
}
