import type { TransformRule } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { renderTemplate } from './template.ts';
import type { TemplateContext } from './template.ts';

/** A transform rule with its templates filled in for one host: ready for `applyTransform`. */
export interface RenderedRule {
  file: string;
  set: Record<string, unknown>;
}

/**
 * Fills in the templates of a site's transform rules for the host it is about to
 * run on. `"{{site.app.port}}"` alone yields the number 3000; literal `values` are
 * copied as they are. Throws UnderstudyError('US_BAD_REQUEST') naming the rule, the
 * key and the placeholder when a template cannot be rendered for this host.
 */
export function renderRules(rules: readonly TransformRule[], ctx: TemplateContext): RenderedRule[] {
  return rules.map((rule) => {
    const set: Record<string, unknown> = {};
    for (const [key, template] of Object.entries(rule.set)) {
      try {
        set[key] = renderTemplate(template, ctx);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        throw new UnderstudyError('US_BAD_REQUEST', `transform of ${rule.file}, key ${key}: ${why}`, { file: rule.file, key });
      }
    }
    for (const [key, value] of Object.entries(rule.values ?? {})) set[key] = value;
    return { file: rule.file, set };
  });
}
