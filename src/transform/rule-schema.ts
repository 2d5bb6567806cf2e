import { z } from 'zod';
import { FORMAT_NAMES } from './formats/format.ts';

/**
 * A rendered rule as it travels to the storage processor
 * (`POST /v1/volumes/:site/transform`, body `{ epoch, rules: [...] }`). Parse a
 * request's rules with `z.array(renderedRuleSchema)`: its output is a `RenderedRule`.
 * (`set` defaults to {} so that replace rules may leave it out.)
 */
export const renderedRuleSchema = z.object({
  file: z.string().min(1),
  set: z.record(z.string(), z.unknown()).default({}),
  format: z.enum(FORMAT_NAMES).optional(),
  replace: z.array(z.object({ match: z.string().min(1), with: z.string() })).optional(),
});
