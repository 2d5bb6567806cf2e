import { UnderstudyError } from '../shared/errors.ts';
import type { HostConfig, SiteConfig } from '../config/types.ts';
import { evaluate, parseExpression, refsOf } from './template-expr.ts';
import type { Expr } from './template-expr.ts';

/**
 * Templates in transform rules. Text with placeholders in double braces:
 *
 * - names: `{{host.address}}`, `{{host.name}}`, `{{site.name}}`, `{{site.app.port}}`,
 *   and any profile value, nested ones with more dots: `{{host.profile.cpus}}`,
 *   `{{host.profile.memoryMb}}`, `{{host.profile.user}}`, `{{host.profile.paths.logs}}`;
 *   in `app.command` and `app.env` only (`{ app: true }`), also `{{volume.path}}`: the
 *   directory the app's data is in on that host (its DATA_DIR);
 * - arithmetic on numbers, to derive a setting from the profile: `+ - * /`,
 *   parentheses, number literals, `min(a, b, …)` and `max(a, b, …)`:
 *   `{{host.profile.memoryMb * 0.25}}`, `{{max(1, host.profile.cpus - 1)}}`.
 *   The result is rounded down to a whole number (after rounding to a millionth, so
 *   that `0.29 * 100` is 29). Write spaces around `-`: names may contain `-`, so
 *   `cpus-1` is a name. Every name used in arithmetic must be a number.
 *
 * A template that is exactly one placeholder keeps the value's type
 * (`"{{host.profile.cpus}}"` → 2, `"{{host.profile.memoryMb / 2}}"` → 1024);
 * placeholders inside other text are rendered as text (`"-Xmx{{host.profile.memoryMb / 2}}m"`).
 */

export interface TemplateContext {
  host: HostConfig;
  site: SiteConfig;
  /** The app's data directory on `host` (DATA_DIR): set where `{{volume.path}}` is known (app.command, app.env). */
  volumePath?: string;
}

/** The placeholders a template may use; `host.profile.*` is any profile key, nested with dots. */
export const KNOWN_PLACEHOLDERS = ['host.address', 'host.name', 'host.profile.<key>[.<key>…]', 'site.name', 'site.app.port'] as const;

/** Known in app.command and app.env only: the app's data directory on the host it starts on. */
export const APP_PLACEHOLDERS = ['volume.path'] as const;

/** Placeholders whose value is always text: refused in arithmetic at config time. */
const TEXT_PLACEHOLDERS = ['host.address', 'host.name', 'site.name', 'volume.path'];

type Placeholder = { source: string; expr: Expr };
type Part = { text: string } | Placeholder;

const TOKEN = /\{\{([^{}]*)\}\}/g;

/**
 * Splits a template into text and parsed placeholders; throws UnderstudyError on `{{`
 * without `}}`, on an empty `{{}}` and on an expression that does not parse.
 */
export function parseTemplate(template: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const m of template.matchAll(TOKEN)) {
    const before = template.slice(last, m.index);
    assertNoStrayBraces(template, before);
    if (before !== '') parts.push({ text: before });
    const source = (m[1] ?? '').trim();
    try {
      parts.push({ source, expr: parseExpression(source) });
    } catch (e) {
      throw new UnderstudyError('US_TEMPLATE_FAILED', `template "${template}": {{${source}}}: ${(e as Error).message}`);
    }
    last = m.index + m[0].length;
  }
  const rest = template.slice(last);
  assertNoStrayBraces(template, rest);
  if (rest !== '') parts.push({ text: rest });
  return parts;
}

function assertNoStrayBraces(template: string, text: string): void {
  if (text.includes('{{') || text.includes('}}')) {
    throw new UnderstudyError('US_TEMPLATE_FAILED', `template "${template}" has an unbalanced {{ or }}`);
  }
}

/** Whether `ref` is a placeholder name this engine knows (not whether a host has it). */
export function isKnownPlaceholder(ref: string): boolean {
  return ['host.address', 'host.name', 'site.name', 'site.app.port'].includes(ref) || /^host\.profile(\.[A-Za-z0-9_-]+)+$/.test(ref);
}

/**
 * Checks a template without a context (config time). Returns a message naming the
 * first problem (syntax, unknown placeholder, text in arithmetic), or undefined when
 * the template is fine.
 */
export function checkTemplate(template: string, opts: { app?: boolean } = {}): string | undefined {
  let parts: Part[];
  try {
    parts = parseTemplate(template);
  } catch (e) {
    return (e as Error).message;
  }
  for (const p of parts) {
    if (!('expr' in p)) continue;
    for (const ref of refsOf(p.expr)) {
      if (opts.app === true && (APP_PLACEHOLDERS as readonly string[]).includes(ref)) {
        if (p.expr.kind !== 'ref') return `{{${p.source}}}: ${ref} is text, arithmetic needs numbers`;
        continue;
      }
      if (!isKnownPlaceholder(ref)) return unknownMessage(ref, opts.app === true);
      if (p.expr.kind !== 'ref' && TEXT_PLACEHOLDERS.includes(ref)) {
        return `{{${p.source}}}: ${ref} is text, arithmetic needs numbers`;
      }
    }
  }
  return undefined;
}

/** Renders one template against a host and a site. Throws UnderstudyError naming the placeholder that failed. */
export function renderTemplate(template: string, ctx: TemplateContext): unknown {
  const parts = parseTemplate(template);
  const render = (p: Placeholder): unknown => {
    try {
      return evaluate(p.expr, (ref) => lookup(ref, ctx));
    } catch (e) {
      if (e instanceof UnderstudyError) throw e;
      throw new UnderstudyError('US_TEMPLATE_FAILED', `{{${p.source}}}: ${(e as Error).message}`);
    }
  };
  const only = parts.length === 1 ? parts[0] : undefined;
  if (only !== undefined && 'expr' in only) return render(only);
  return parts.map((p) => ('expr' in p ? asText(render(p)) : p.text)).join('');
}

function unknownMessage(ref: string, app = false): string {
  const known = app ? [...KNOWN_PLACEHOLDERS, ...APP_PLACEHOLDERS] : KNOWN_PLACEHOLDERS;
  const only = !app && (APP_PLACEHOLDERS as readonly string[]).includes(ref) ? ' (only in app.command and app.env)' : '';
  return `unknown placeholder {{${ref}}}${only}; known: ${known.map((k) => `{{${k}}}`).join(', ')}`;
}

function lookup(ref: string, ctx: TemplateContext): unknown {
  switch (ref) {
    case 'host.address':
      return ctx.host.address;
    case 'host.name':
      return ctx.host.name;
    case 'site.name':
      return ctx.site.name;
    case 'site.app.port':
      return ctx.site.app.port;
    case 'volume.path':
      if (ctx.volumePath !== undefined) return ctx.volumePath;
      throw new UnderstudyError('US_TEMPLATE_FAILED', unknownMessage(ref));
  }
  if (isKnownPlaceholder(ref)) {
    const keys = ref.split('.').slice(2);
    let node: unknown = ctx.host.profile;
    for (const [i, key] of keys.entries()) {
      if (typeof node !== 'object' || node === null || Array.isArray(node) || !Object.hasOwn(node, key)) {
        const hint = /-\d+$/.test(key) ? ' (for arithmetic, write spaces around -)' : '';
        throw new UnderstudyError(
          'US_TEMPLATE_FAILED',
          `placeholder {{${ref}}}: host ${ctx.host.name} has no profile.${keys.slice(0, i + 1).join('.')}${hint}`,
        );
      }
      node = (node as Record<string, unknown>)[key];
    }
    return node;
  }
  throw new UnderstudyError('US_TEMPLATE_FAILED', unknownMessage(ref));
}

function asText(v: unknown): string {
  return typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
}
