import { UnderstudyError } from '../shared/errors.ts';

/**
 * A problem found in a config file, placed where an operator can find it:
 * `file:line:col: path: message`. `line` and `col` are 1-based and point at the
 * offending value, or at the key (or the enclosing map) when the value is missing.
 * `path` is the dotted config path (`sites.shop.health.probe.every`,
 * `pools.spares[1]`), empty for problems of the whole file (YAML syntax).
 */
export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

/** One line per problem, in file order. */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map(formatProblem).join('\n');
}

export function formatProblem(p: ConfigProblem): string {
  const where = `${p.file}:${p.line}:${p.col}`;
  return p.path === '' ? `${where}: ${p.message}` : `${where}: ${p.path}: ${p.message}`;
}

/** Sorts problems by position, then path, so output is stable and reads top-down. */
export function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.col - b.col || a.path.localeCompare(b.path));
}

/**
 * Thrown by `loadConfig()` when the file is not a valid config. It lists every
 * problem found (not just the first), so an operator fixes the file in one pass.
 * Its message is `formatProblems(problems)`.
 */
export class ConfigError extends UnderstudyError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super('US_CONFIG_INVALID', formatProblems(problems), { problems });
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Renders a path of keys and indexes: ["sites","shop","app","command",1] → "sites.shop.app.command[1]". */
export function pathToString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/**
 * A problem before it is placed in the file: the config path, the message, and
 * whether to point at the value (default) or at its key (unknown keys, bad names).
 */
export interface Finding {
  path: PropertyKey[];
  message: string;
  at?: 'value' | 'key';
}
