import type { z } from 'zod';
import type { Finding } from './problems.ts';

/**
 * Turns zod issues into findings an operator can act on: "is required" for a
 * missing key, "unknown key (did you mean every?)" for a typo, and the schema's
 * own message for everything else. Paths are prefixed with `base` (the section).
 */
export function zodFindings(error: z.ZodError, base: PropertyKey[], schema: z.ZodType, input: unknown): Finding[] {
  const out: Finding[] = [];
  for (const issue of flattenUnions(error.issues)) {
    const rel = issue.path as PropertyKey[];
    const path = [...base, ...rel];
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, rel);
      for (const key of issue.keys) {
        const hint = closest(key, known);
        out.push({
          path: [...path, key],
          at: 'key',
          message: `unknown key${hint ? ` (did you mean ${hint}?)` : known.length ? ` (known: ${known.join(', ')})` : ''}`,
        });
      }
      continue;
    }
    if (issue.code === 'invalid_key') {
      const inner = issue.issues[0]?.message ?? 'invalid name';
      out.push({ path, at: 'key', message: `bad key: ${inner}` });
      continue;
    }
    const missing = valueAt(input, rel) === undefined;
    // A custom rule says why a missing value is needed: its message stands.
    out.push({ path, message: missing && issue.code !== 'custom' ? 'is required' : issue.message });
  }
  return out;
}

/**
 * A value that matches no branch of a union (`power: local` or `power: { ipmi: … }`)
 * is reported by the branch that got furthest into it: its issues say what is wrong
 * (a missing `user`), where the union's own says only "invalid input".
 */
function flattenUnions(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): z.core.$ZodIssue[] {
  const out: z.core.$ZodIssue[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...(issue.path as PropertyKey[])];
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const depth = (branch: readonly z.core.$ZodIssue[]) => Math.max(0, ...branch.map((i) => i.path.length));
      const best = issue.errors.reduce((a, b) => (depth(b) > depth(a) ? b : a));
      out.push(...flattenUnions(best, path));
      continue;
    }
    out.push({ ...issue, path } as z.core.$ZodIssue);
  }
  return out;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  valueType?: z.ZodType;
  element?: z.ZodType;
  in?: z.ZodType;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** Keys of the object schema found at `path` inside `schema` (through defaults, records, lists). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: z.ZodType | undefined = schema;
  let i = 0;
  while (s !== undefined) {
    const def = defOf(s);
    if (def.innerType) {
      s = def.innerType;
      continue;
    }
    if (def.type === 'pipe') {
      s = def.in;
      continue;
    }
    if (i === path.length) return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
    const seg = path[i++];
    if (def.type === 'object') s = def.shape?.[String(seg)];
    else if (def.type === 'record') s = def.valueType;
    else if (def.type === 'array') s = def.element;
    else return [];
  }
  return [];
}

/** The known key closest to a typo, if it is close enough to be a plausible typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}
