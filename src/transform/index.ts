/** The transformation engine: fit a replica's files to the host that is about to run it. */
export { renderRules } from './render-rules.ts';
export type { RenderedRule, RenderedReplace } from './render-rules.ts';
export { applyTransform } from './apply-transform.ts';
export { formatTransformDiff } from './diff.ts';
export { renderedRuleSchema } from './rule-schema.ts';
export { checkTemplate, renderTemplate, KNOWN_PLACEHOLDERS } from './template.ts';
export type { TemplateContext } from './template.ts';
export { compilePattern } from './text-replace.ts';
export { formatFor, formatNamed, FORMATS, FORMAT_NAMES } from './formats/index.ts';
export type { DocumentFormat, EditableDocument, FormatName } from './formats/index.ts';
