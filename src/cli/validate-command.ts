import path from 'node:path';
import { loadConfig } from '../config/load-config.ts';
import { ConfigError, formatProblem } from '../config/problems.ts';
import { isUnderstudyError } from '../shared/errors.ts';
import { baseDirFor } from './config-path.ts';
import { ephemeralPortRange, ephemeralWarning, listenEndpoints } from './listen-ports.ts';

/**
 * `understudy validate -c FILE`: exit 0 with `ok: FILE (N sites, M hosts)` on
 * stdout (and a `warning:` line on stderr per listener inside this machine's range of
 * ports for outgoing connections), or 1 with one `file:line:col: path: message` line per
 * problem on stderr.
 * Relative paths in the file resolve as for `up` (see config-path.ts). Problems
 * name the file as the operator spelled it.
 */
export function runValidate(file: string): number {
  try {
    const config = loadConfig(file, { baseDir: baseDirFor(path.resolve(file)) });
    const sites = Object.keys(config.sites).length;
    const hosts = Object.keys(config.hosts).length;
    process.stdout.write(`ok: ${file} (${sites} site${sites === 1 ? '' : 's'}, ${hosts} host${hosts === 1 ? '' : 's'})\n`);
    // Valid, but a start may fail for it on this machine: said, not refused.
    const range = ephemeralPortRange();
    for (const [where, e] of listenEndpoints(config)) {
      const w = ephemeralWarning(file, where, e, range);
      if (w) process.stderr.write(`warning: ${w}\n`);
    }
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) process.stderr.write(`${formatProblem(p)}\n`);
      return 1;
    }
    if (isUnderstudyError(e)) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
