import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * The dashboard's static files: plain HTML, CSS and JavaScript in the package's
 * top-level `dashboard/` folder, with no build step and nothing from a CDN. The
 * folder is found by walking up from this module, so the same code finds it when
 * run from `src/` (tsx) and from a compiled `dist/` tree. The files hold no secret:
 * the page asks the operator for the API token when the API has one.
 */
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Scripts, styles and API calls from the controller's own origin only. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

let found: string | null | undefined;

export function dashboardDir(): string | null {
  if (found !== undefined) return found;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'dashboard', 'index.html'))) return (found = path.join(dir, 'dashboard'));
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return (found = null);
}

/** Serves `dashboard/<file>` (index.html for `/`); 404 for anything else. */
export function serveDashboardFile(file: string, res: http.ServerResponse): void {
  const dir = dashboardDir();
  if (!dir)
    throw new UnderstudyError('US_NOT_FOUND', 'the dashboard files (dashboard/ in the package) are missing from this installation: reinstall understudy');
  const type = TYPES[path.extname(file)];
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(file) || !type) throw new UnderstudyError('US_NOT_FOUND', `no dashboard file ${file}`);
  let body: Buffer;
  try {
    body = fs.readFileSync(path.join(dir, file));
  } catch {
    throw new UnderstudyError('US_NOT_FOUND', `no dashboard file ${file}`);
  }
  res.writeHead(200, {
    'content-type': type,
    'content-length': body.length,
    'cache-control': 'no-cache',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
  res.end(body);
}
