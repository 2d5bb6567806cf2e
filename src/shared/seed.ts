import fs from 'node:fs';
import { UnderstudyError } from './errors.ts';

/**
 * `app.seed`: the directory a new volume is copied from. Only needed while a site has
 * no volume yet; then a seed that is not a directory stops the start, checked by
 * `up` before anything starts and by the storage processor that creates the volume.
 */
export function seedProblem(seed: string, site: string): UnderstudyError | null {
  if (fs.statSync(seed, { throwIfNoEntry: false })?.isDirectory()) return null;
  const what = fs.existsSync(seed) ? 'is not a directory' : 'does not exist';
  return new UnderstudyError(
    'US_SEED_MISSING',
    `sites.${site}.app.seed: ${seed} ${what}, and ${site} has no volume yet to start from: fix the path (relative paths resolve against the config file's directory), or remove seed to start from an empty volume`,
    { site, seed },
  );
}
