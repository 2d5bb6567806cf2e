import type { z } from 'zod';

/**
 * Best-effort parse: the parts of `value` that are valid, with defaults in place
 * of the parts that are not (when the schema has one). Used only after a strict
 * parse has already reported the problems, so that cross-section checks (does the
 * primary exist? is the front taken?) still run on an entry with, say, a bad
 * probe interval. Fails only when a required part is unusable.
 */
export function salvage(schema: z.ZodType, value: unknown): { ok: true; data: unknown } | { ok: false } {
  const strict = schema.safeParse(value);
  if (strict.success) return { ok: true, data: strict.data };
  if (value === undefined) return { ok: false };

  const { def, inner } = unwrap(schema);
  if (def.type === 'object' && def.shape && isMap(value)) {
    const out: Record<string, unknown> = def.catchall ? { ...value } : {};
    for (const [key, field] of Object.entries(def.shape)) {
      const r = salvage(field, value[key]);
      if (r.ok) {
        if (r.data !== undefined) out[key] = r.data;
        continue;
      }
      const fallback = field.safeParse(undefined);
      if (!fallback.success) return { ok: false };
      if (fallback.data !== undefined) out[key] = fallback.data;
    }
    return { ok: true, data: out };
  }
  if (def.type === 'array' && def.element && Array.isArray(value)) {
    const element = def.element;
    const items = value
      .map((v) => salvage(element, v))
      .filter((r) => r.ok)
      .map((r) => r.data);
    return inner.safeParse(items).success ? { ok: true, data: items } : { ok: false };
  }
  if (def.type === 'record' && def.valueType && def.keyType && isMap(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (!def.keyType.safeParse(k).success) continue;
      const r = salvage(def.valueType, v);
      if (r.ok) out[k] = r.data;
    }
    return { ok: true, data: out };
  }
  return { ok: false };
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
  innerType?: z.ZodType;
  element?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
}

function unwrap(schema: z.ZodType): { def: Def; inner: z.ZodType } {
  let s = schema;
  for (;;) {
    const def = (s as unknown as { _zod: { def: Def } })._zod.def;
    if (def.innerType && ['optional', 'default', 'prefault', 'nullable'].includes(def.type)) s = def.innerType;
    else return { def, inner: s };
  }
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
