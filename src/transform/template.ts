import { UnderstudyError } from '../shared/errors.ts';
import type { HostConfig, SiteConfig } from '../config/types.ts';

/**
 * Templates in transform rules: `{{host.address}}`, `{{host.name}}`,
 * `{{host.profile.X}}`, `{{site.name}}`, `{{site.app.port}}`. A template that is
 * exactly one placeholder keeps the value's type (`"{{host.profile.cpus}}"` → 2);
 * placeholders inside other text are rendered as strings ("http://{{host.address}}").
 */

export interface TemplateContext {
  host: HostConfig;
  site: SiteConfig;
}

/** The placeholders a template may use; `host.profile.*` is any profile key. */
export const KNOWN_PLACEHOLDERS = ['host.address', 'host.name', 'host.profile.<key>', 'site.name', 'site.app.port'] as const;

type Part = { text: string } | { ref: string };

const TOKEN = /\{\{([^{}]*)\}\}/g;

/** Splits a template into text and placeholders; throws on `{{` without `}}` and the like. */
export function parseTemplate(template: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const m of template.matchAll(TOKEN)) {
    const before = template.slice(last, m.index);
    assertNoStrayBraces(template, before);
    if (before !== '') parts.push({ text: before });
    parts.push({ ref: (m[1] ?? '').trim() });
    last = m.index + m[0].length;
  }
  const rest = template.slice(last);
  assertNoStrayBraces(template, rest);
  if (rest !== '') parts.push({ text: rest });
  return parts;
}

function assertNoStrayBraces(template: string, text: string): void {
  if (text.includes('{{') || text.includes('}}')) {
    throw new UnderstudyError('US_BAD_REQUEST', `template "${template}" has an unbalanced {{ or }}`);
  }
}

/** Whether `ref` is a placeholder name this engine knows (not whether a host has it). */
export function isKnownPlaceholder(ref: string): boolean {
  return ['host.address', 'host.name', 'site.name', 'site.app.port'].includes(ref) || /^host\.profile\.[A-Za-z0-9_-]+$/.test(ref);
}

/**
 * Checks a template without a context (config time). Returns a message naming the
 * first bad placeholder, or undefined when the template is fine.
 */
export function checkTemplate(template: string): string | undefined {
  let parts: Part[];
  try {
    parts = parseTemplate(template);
  } catch (e) {
    return (e as Error).message;
  }
  for (const p of parts) {
    if ('ref' in p && !isKnownPlaceholder(p.ref)) {
      return `unknown placeholder {{${p.ref}}}; known: ${KNOWN_PLACEHOLDERS.map((k) => `{{${k}}}`).join(', ')}`;
    }
  }
  return undefined;
}

/** Renders one template against a host and a site. Throws UnderstudyError naming an unknown placeholder. */
export function renderTemplate(template: string, ctx: TemplateContext): unknown {
  const parts = parseTemplate(template);
  const only = parts.length === 1 ? parts[0] : undefined;
  if (only !== undefined && 'ref' in only) return lookup(only.ref, ctx);
  return parts.map((p) => ('ref' in p ? asText(lookup(p.ref, ctx)) : p.text)).join('');
}

function lookup(ref: string, ctx: TemplateContext): unknown {
  switch (ref) {
    case 'host.address': return ctx.host.address;
    case 'host.name': return ctx.host.name;
    case 'site.name': return ctx.site.name;
    case 'site.app.port': return ctx.site.app.port;
  }
  const profileKey = /^host\.profile\.([A-Za-z0-9_-]+)$/.exec(ref)?.[1];
  if (profileKey !== undefined) {
    if (!Object.hasOwn(ctx.host.profile, profileKey)) {
      throw new UnderstudyError('US_BAD_REQUEST', `placeholder {{${ref}}}: host ${ctx.host.name} has no profile.${profileKey}`);
    }
    return ctx.host.profile[profileKey];
  }
  throw new UnderstudyError('US_BAD_REQUEST', `unknown placeholder {{${ref}}}; known: ${KNOWN_PLACEHOLDERS.map((k) => `{{${k}}}`).join(', ')}`);
}

function asText(v: unknown): string {
  return typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
}
