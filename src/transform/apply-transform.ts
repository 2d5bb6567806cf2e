import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { TransformChange } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { FORMAT_HINT, FORMAT_NAMES, formatFor, formatNamed } from './formats/index.ts';
import type { DocumentFormat } from './formats/index.ts';
import type { RenderedRule } from './render-rules.ts';
import { resolveInside } from './safe-path.ts';
import { applyReplace, ReplaceError } from './text-replace.ts';

/**
 * Applies rendered transform rules to the volume at `dir`. A `set` rule sets dotted
 * keys in its file, in the file's format (by its name, or the rule's `format`),
 * creating the file and what is missing in it; a `replace` rule edits the file as
 * text, each pattern matching exactly once. Rules apply in order, several to one
 * file included.
 *
 * Contract:
 * - returns one change `{ file, key, from, to }` per key whose value changed (`from`
 *   is undefined when the key was absent; INI and .env values are text) and per
 *   replaced match (`key` is the pattern between slashes); a value already equal
 *   gives none, so a second run returns [] and writes nothing (idempotent);
 * - only the changed values' text changes: comments, order and every other byte of
 *   YAML (when no key is added), INI, .env and text files are kept; JSON is
 *   re-serialized in the file's own indent;
 * - rendering for host A after host B gives back A's file exactly (reversible), as
 *   long as the rules set the same keys;
 * - all files are read and edited in memory first; if any rule fails (an unknown
 *   format, an unreadable or invalid file, a key through a non-map, a pattern that
 *   does not match exactly once) nothing is written and
 *   UnderstudyError('US_TRANSFORM_FAILED') names the file and the key or pattern
 *   (a path out of the volume: US_UNSAFE_PATH);
 * - each changed file is replaced atomically (temp + fsync + rename).
 */
export function applyTransform(dir: string, rules: readonly RenderedRule[]): TransformChange[] {
  const files = new Map<string, { abs: string; original: string | undefined; text: string | undefined }>();
  const changes: TransformChange[] = [];

  for (const rule of rules) {
    const bad = (message: string, key?: string): UnderstudyError =>
      new UnderstudyError('US_TRANSFORM_FAILED', `transform file ${rule.file}: ${message}`, key === undefined ? { file: rule.file } : { file: rule.file, key });
    let entry = files.get(rule.file);
    if (entry === undefined) {
      const abs = resolveInside(dir, rule.file);
      const original = readText(abs, rule.file);
      entry = { abs, original, text: original };
      files.set(rule.file, entry);
    }
    const keys = Object.keys(rule.set);

    if (rule.replace !== undefined && rule.replace.length > 0) {
      if (keys.length > 0) throw bad('a rule has either set or replace, not both');
      if (rule.format !== undefined && rule.format !== 'text') throw bad(`replace rules edit text; format ${rule.format} applies to set rules`);
      if (entry.text === undefined) throw bad(`the file does not exist; replace pattern /${rule.replace[0]?.match ?? ''}/ has nothing to match`);
      try {
        entry.text = applyReplace(rule.file, entry.text, rule.replace, changes);
      } catch (e) {
        if (e instanceof ReplaceError) throw bad(e.message, e.key);
        throw e;
      }
      continue;
    }
    if (keys.length === 0) continue;

    const format = formatOf(rule, bad);
    let doc;
    try {
      doc = format.open(entry.text ?? '');
    } catch (e) {
      throw bad(`not valid ${format.name} (${(e as Error).message})`);
    }
    let changed = false;
    for (const [key, value] of Object.entries(rule.set)) {
      try {
        const to = format.normalize(value);
        const from = structuredClone(doc.get(key));
        if (isDeepStrictEqual(from, to)) continue;
        doc.set(key, structuredClone(to));
        changed = true;
        changes.push({ file: rule.file, key, from, to });
      } catch (e) {
        throw bad((e as Error).message, key);
      }
    }
    if (changed) entry.text = doc.text();
  }

  for (const { abs, original, text } of files.values()) {
    if (text !== undefined && text !== original) writeFileAtomic(abs, text);
  }
  return changes;
}

function formatOf(rule: RenderedRule, bad: (message: string) => UnderstudyError): DocumentFormat {
  if (rule.format === 'text') throw bad('format text takes replace rules, not set');
  if (rule.format !== undefined) {
    const named = formatNamed(rule.format);
    if (named === undefined) throw bad(`unknown format ${JSON.stringify(rule.format)} (known: ${FORMAT_NAMES.join(', ')})`);
    return named;
  }
  const format = formatFor(rule.file);
  if (format === undefined) throw bad(`unsupported format (known: ${FORMAT_HINT})`);
  return format;
}

/** The file's text, or undefined when it does not exist. */
function readText(abs: string, file: string): string | undefined {
  try {
    return fs.readFileSync(abs, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UnderstudyError('US_TRANSFORM_FAILED', `transform file ${file}: cannot read it (${(e as Error).message})`, { file });
  }
}
