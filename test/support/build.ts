import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Test support: the compiled build (dist/) that bin/understudy.js runs, and so every
 * process an end-to-end test or a bench starts, is never older than src/. When any
 * file or directory under src/ is newer than the last build (dist/.tsbuildinfo:
 * tsc rewrites it when it emitted something, and this sets its time to the start
 * of every build it runs, since tsc leaves it alone when nothing changed),
 * `tsc -p tsconfig.build.json` runs first, under a lock so that test files started
 * side by side do not write dist/ at the same time. Fresh, it costs a walk of src/
 * (a few ms).
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STAMP = path.join(ROOT, 'dist/.tsbuildinfo');

function newestUnder(dir: string): number {
  let newest = fs.statSync(dir).mtimeMs;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestUnder(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

function isFresh(): boolean {
  if (!fs.existsSync(STAMP) || !fs.existsSync(path.join(ROOT, 'dist/cli/main.js'))) return false;
  return newestUnder(path.join(ROOT, 'src')) <= fs.statSync(STAMP).mtimeMs;
}

export function ensureBuilt(): void {
  if (isFresh()) return;
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  process.stderr.write('test support: src/ is newer than dist/: building (tsc -p tsconfig.build.json)\n');
  // flock(1) serializes concurrent builds; the second one finds nothing to do.
  const startedAt = new Date();
  execFileSync('flock', [path.join(ROOT, 'tsconfig.build.json'), process.execPath, tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  // A file saved during the build is newer than this and makes the next check build again.
  fs.utimesSync(STAMP, startedAt, startedAt);
}
