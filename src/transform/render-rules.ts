import type { TransformRule } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { FormatName } from './formats/format.ts';
import { renderTemplate } from './template.ts';
import type { TemplateContext } from './template.ts';

/**
 * A transform rule with its templates filled in for one host: ready for
 * `applyTransform`, and what the controller sends to the storage processor.
 * Either `set` has keys, or `replace` has entries (`set` is then empty).
 */
export interface RenderedRule {
  file: string;
  /** Dotted key → value. */
  set: Record<string, unknown>;
  /** The file's format when not the one its name implies; `text` for replace rules. */
  format?: FormatName;
  /** Plain-text edits: each `match` (a regular expression) must match exactly once; the match becomes `with`. */
  replace?: RenderedReplace[];
}

export interface RenderedReplace {
  match: string;
  with: string;
}

/**
 * Fills in the templates of a site's transform rules for the host it is about to
 * run on. `"{{site.app.port}}"` alone yields the number 3000; literal `values` are
 * copied as they are; a replace entry's `with` is always text. Throws
 * UnderstudyError('US_TEMPLATE_FAILED') naming the rule's file, the key (or pattern)
 * and the placeholder when a template cannot be rendered for this host.
 */
export function renderRules(rules: readonly TransformRule[], ctx: TemplateContext): RenderedRule[] {
  return rules.map((rule) => {
    const fail = (what: string, e: unknown, details: Record<string, string>): never => {
      const why = e instanceof Error ? e.message : String(e);
      throw new UnderstudyError('US_TEMPLATE_FAILED', `transform of ${rule.file}, ${what}: ${why}`, { file: rule.file, ...details });
    };
    const set: Record<string, unknown> = {};
    for (const [key, template] of Object.entries(rule.set)) {
      try {
        set[key] = renderTemplate(template, ctx);
      } catch (e) {
        fail(`key ${key}`, e, { key });
      }
    }
    for (const [key, value] of Object.entries(rule.values ?? {})) set[key] = value;
    const out: RenderedRule = { file: rule.file, set };
    if (rule.format !== undefined) out.format = rule.format;
    if (rule.replace !== undefined) {
      out.replace = rule.replace.map((r) => {
        try {
          const to = renderTemplate(r.with, ctx);
          return { match: r.match, with: typeof to === 'object' && to !== null ? JSON.stringify(to) : String(to) };
        } catch (e) {
          return fail(`replace /${r.match}/`, e, { key: `/${r.match}/` });
        }
      });
    }
    return out;
  });
}
