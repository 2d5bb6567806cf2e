import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { TransformChange } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { getKey, setKey } from './dotted-keys.ts';
import type { Tree } from './dotted-keys.ts';
import { formatFor, FORMATS } from './formats/index.ts';
import type { DocumentFormat } from './formats/index.ts';
import type { RenderedRule } from './render-rules.ts';
import { resolveInside } from './safe-path.ts';

/**
 * Applies rendered transform rules to the volume at `dir`: for each rule, sets its
 * dotted keys in its file (creating the file and intermediate objects if missing).
 *
 * Contract:
 * - returns one change `{ file, key, from, to }` per key whose value changed
 *   (`from` is undefined when the key was absent); a key already equal gives none,
 *   so a second run returns [] and writes nothing (idempotent);
 * - all files are read and edited in memory first; if any rule fails (a path out of
 *   the volume, an unknown format, an unreadable file, a key through a non-object)
 *   nothing is written and UnderstudyError('US_BAD_REQUEST') names the file and key;
 * - each changed file is replaced atomically (temp + fsync + rename).
 */
export function applyTransform(dir: string, rules: readonly RenderedRule[]): TransformChange[] {
  const docs = new Map<string, { abs: string; format: DocumentFormat; doc: Tree; changed: boolean }>();
  const changes: TransformChange[] = [];

  for (const rule of rules) {
    let entry = docs.get(rule.file);
    if (entry === undefined) {
      const abs = resolveInside(dir, rule.file);
      const format = formatFor(rule.file);
      if (format === undefined) {
        const known = FORMATS.flatMap((f) => f.extensions).join(', ');
        throw new UnderstudyError('US_BAD_REQUEST', `transform file ${rule.file}: unsupported format (known: ${known})`, { file: rule.file });
      }
      entry = { abs, format, doc: readDoc(abs, rule.file, format), changed: false };
      docs.set(rule.file, entry);
    }
    for (const [key, to] of Object.entries(rule.set)) {
      try {
        const from = structuredClone(getKey(entry.doc, key));
        if (isDeepStrictEqual(from, to)) continue;
        setKey(entry.doc, key, structuredClone(to));
        entry.changed = true;
        changes.push({ file: rule.file, key, from, to });
      } catch (e) {
        throw new UnderstudyError('US_BAD_REQUEST', `transform file ${rule.file}: ${(e as Error).message}`, { file: rule.file, key });
      }
    }
  }

  for (const { abs, format, doc, changed } of docs.values()) {
    if (changed) writeFileAtomic(abs, format.stringify(doc));
  }
  return changes;
}

function readDoc(abs: string, file: string, format: DocumentFormat): Tree {
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UnderstudyError('US_BAD_REQUEST', `transform file ${file}: cannot read it (${(e as Error).message})`, { file });
  }
  try {
    return format.parse(text);
  } catch (e) {
    throw new UnderstudyError('US_BAD_REQUEST', `transform file ${file}: not valid ${format.name} (${(e as Error).message})`, { file });
  }
}
