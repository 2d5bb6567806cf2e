import type { DocumentFormat } from './format.ts';
import { jsonFormat } from './json.ts';

export type { DocumentFormat } from './format.ts';

/** Every format the transform engine knows, tried in order. */
export const FORMATS: readonly DocumentFormat[] = [jsonFormat];

/** The format of `file` by its name, or undefined when none handles it. */
export function formatFor(file: string): DocumentFormat | undefined {
  const lower = file.toLowerCase();
  return FORMATS.find((f) => f.extensions.some((ext) => lower.endsWith(ext)));
}
