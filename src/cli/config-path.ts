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

/**
 * Relative paths in a config file resolve against the file's own directory (as
 * Docker Compose does), whatever the working directory: `up -c /etc/understudy/shop.yaml`
 * run by a service manager from `/` keeps its state beside the file.
 */
export function baseDirFor(configPath: string): string {
  return path.dirname(path.resolve(configPath));
}
