import fs from 'node:fs';
import path from 'node:path';
import { UnderstudyError } from '../shared/errors.ts';
import { compileConfig } from './compile.ts';
import { deepFreeze } from './deep-freeze.ts';
import { noteSource } from './handoff.ts';
import { parseSections } from './parse-sections.ts';
import { ConfigError, pathToString, sortProblems } from './problems.ts';
import type { ConfigProblem, Finding } from './problems.ts';
import { checkReferences } from './references.ts';
import type { UnderstudyConfig } from './types.ts';
import { parseYamlSource } from './yaml-source.ts';

export { ConfigError, formatProblems } from './problems.ts';
export type { ConfigProblem } from './problems.ts';

export interface LoadConfigOptions {
  /** Directory relative paths in the file are resolved against. @default the file's own directory */
  baseDir?: string;
}

/**
 * Loads a config file: YAML → validated → defaults → compiled (types.ts), frozen.
 *
 * Throws `UnderstudyError('US_CONFIG_NOT_FOUND')` when the file cannot be read, and
 * `ConfigError` ('US_CONFIG_INVALID') listing every problem of the file, each placed
 * as `file:line:col: path: message` (`file` as the caller spelled it). Nothing is
 * returned unless the whole file is valid.
 */
export function loadConfig(file: string, opts: LoadConfigOptions = {}): UnderstudyConfig {
  const text = readConfigFile(file);
  return parseConfig(text, file, opts);
}

/** Same as `loadConfig`, from text already read (`file` only names it in problems). */
export function parseConfig(text: string, file: string, opts: LoadConfigOptions = {}): UnderstudyConfig {
  const baseDir = path.resolve(opts.baseDir ?? path.dirname(path.resolve(file)));
  const source = parseYamlSource(text);
  if (source.syntaxErrors.length > 0) {
    throw new ConfigError(source.syntaxErrors.map((e) => ({ file, line: e.line, col: e.col, path: '', message: e.message })));
  }

  const findings: Finding[] = [];
  const parsed = parseSections(source.data, findings);
  const config = compileConfig(parsed, { file: path.resolve(file), baseDir }, findings);
  checkReferences(config, parsed, findings);

  if (findings.length > 0) {
    const problems: ConfigProblem[] = dedupe(findings).map((f) => ({
      file,
      ...source.locate(f.path, f.at),
      path: pathToString(f.path),
      message: f.message,
    }));
    throw new ConfigError(sortProblems(problems));
  }
  return noteSource(deepFreeze(config), text);
}

function readConfigFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'not found'
        : code === 'EISDIR'
          ? 'is a directory, not a file'
          : code === 'EACCES'
            ? 'not readable (permission denied)'
            : (e as Error).message;
    throw new UnderstudyError('US_CONFIG_NOT_FOUND', `config file ${file}: ${why}. Pass one with -c FILE (e.g. understudy validate -c examples/demo.yaml)`, {
      file,
    });
  }
}

function dedupe(findings: Finding[]): Finding[] {
  const seen = new Set<string>();
  return findings.filter((f) => {
    const k = `${pathToString(f.path)}\0${f.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
