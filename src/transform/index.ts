/** The transformation engine: fit a replica's files to the host that is about to run it. */
export { renderRules } from './render-rules.ts';
export type { RenderedRule } from './render-rules.ts';
export { applyTransform } from './apply-transform.ts';
export { checkTemplate, renderTemplate, KNOWN_PLACEHOLDERS } from './template.ts';
export type { TemplateContext } from './template.ts';
export { formatFor, FORMATS } from './formats/index.ts';
export type { DocumentFormat } from './formats/index.ts';
