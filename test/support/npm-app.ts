import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A published app installed from the npm registry, as its users install it
 * (`npm install --no-audit --no-fund PKG@VERSION`), into a cache outside the
 * repository: `<tmpdir>/understudy-npm-cache/<pkg>@<version>/`, reused when a
 * previous run completed it (a `.complete` file written after a good install).
 * Returns the cache directory; the package is in its `node_modules/`.
 */
export function installNpmApp(pkg: string, version: string, timeoutMs = 20 * 60_000): string {
  const dir = path.join(os.tmpdir(), 'understudy-npm-cache', `${pkg.replace('/', '+')}@${version}`);
  const complete = path.join(dir, '.complete');
  const manifest = path.join(dir, 'node_modules', ...pkg.split('/'), 'package.json');
  if (fs.existsSync(complete) && fs.existsSync(manifest) && (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version?: string }).version === version)
    return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'understudy-npm-app-cache', private: true }));
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', `${pkg}@${version}`], { cwd: dir, encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`npm install ${pkg}@${version} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  fs.writeFileSync(complete, new Date().toISOString());
  return dir;
}
