import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BUNDLED_DEMO = path.join(PACKAGE_ROOT, 'examples/demo.yaml');

/** `-c FILE` if given; else `understudy.yaml` in the working directory if present; else the bundled demo. */
export function resolveConfigPath(given?: string): string {
  if (given) return path.resolve(given);
  const local = path.resolve('understudy.yaml');
  return fs.existsSync(local) ? local : BUNDLED_DEMO;
}

/** Relative paths of the bundled demo resolve against the package root, the user's against the working directory. */
export function baseDirFor(configPath: string): string {
  return configPath === BUNDLED_DEMO ? PACKAGE_ROOT : process.cwd();
}
