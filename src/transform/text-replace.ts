import type { TransformChange } from '../shared/contracts.ts';
import type { RenderedReplace } from './render-rules.ts';
import { UnderstudyError } from '../shared/errors.ts';

/** The key a replace entry's change is reported under: its pattern between slashes. */
export function replaceKey(match: string): string {
  return `/${match}/`;
}

/**
 * Compiles a replace pattern: a JavaScript regular expression with the `m` flag
 * (`^` and `$` match at every line). Throws an Error saying why it is invalid.
 */
export function compilePattern(match: string): RegExp {
  if (match === '') throw new UnderstudyError('US_TRANSFORM_FAILED', 'the pattern is empty');
  try {
    return new RegExp(match, 'gm');
  } catch (e) {
    throw new UnderstudyError('US_TRANSFORM_FAILED', `not a valid regular expression (${(e as Error).message})`);
  }
}

/**
 * Applies replace entries to `text`, in order. Each pattern must match exactly once
 * in the text as it is when the entry runs; the matched text is replaced by `with`,
 * taken literally (no `$1`: use lookarounds like `(?<=listen )\S+` to keep context).
 * A match already equal to `with` changes nothing. Throws an Error naming the
 * pattern when it matches zero or several times.
 */
export function applyReplace(file: string, text: string, entries: readonly RenderedReplace[], changes: TransformChange[]): string {
  let out = text;
  for (const entry of entries) {
    const key = replaceKey(entry.match);
    let re: RegExp;
    try {
      re = compilePattern(entry.match);
    } catch (e) {
      throw new ReplaceError(key, `pattern ${key}: ${(e as Error).message}`);
    }
    const matches = Array.from(out.matchAll(re));
    const only = matches[0];
    if (matches.length !== 1 || only === undefined) {
      throw new ReplaceError(
        key,
        `pattern ${key} matches ${matches.length === 0 ? 'nothing' : `${matches.length} times`}; it must match exactly once (and also match what another host's transform wrote there)`,
      );
    }
    const from = only[0];
    if (from === entry.with) continue;
    out = out.slice(0, only.index) + entry.with + out.slice(only.index + from.length);
    changes.push({ file, key, from, to: entry.with });
  }
  return out;
}

/** A replace entry that could not be applied; `key` names its pattern. */
export class ReplaceError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(message);
  }
}
