#!/usr/bin/env node
// The installed entry point, and the one every part Understudy starts runs through
// (`understudy agent|storage|director|controller`): the compiled CLI in dist/.
// dist/ is built by `npm run build`, which `npm ci` runs (the `prepare` script) and
// `npm pack` puts in the package; nothing compiles TypeScript at run time.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('understudy: the compiled build (dist/) is missing: run `npm run build` (or `npm ci`) in the package directory [US_NOT_BUILT]');
  process.exit(1);
}
await import(main.href);
