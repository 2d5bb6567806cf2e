import path from 'node:path';
import type { DocumentFormat, KeyedFormatName } from './format.ts';
import { envFormat } from './env.ts';
import { iniFormat } from './ini.ts';
import { jsonFormat } from './json.ts';
import { yamlFormat } from './yaml.ts';

export type { DocumentFormat, EditableDocument, FormatName, KeyedFormatName } from './format.ts';
export { FORMAT_NAMES } from './format.ts';

/** Every format `set` rules can edit, tried in order. (`replace` rules edit any file as text.) */
export const FORMATS: readonly DocumentFormat[] = [jsonFormat, yamlFormat, iniFormat, envFormat];

/**
 * The format of `file` by its name, or undefined when none handles it:
 * `.json` → json; `.yaml`, `.yml` → yaml; `.ini`, `.cfg` → ini; `.env`, a file named
 * `.env` or `.env.<anything>` (`.env.production`) → env.
 */
export function formatFor(file: string): DocumentFormat | undefined {
  const base = path.basename(file).toLowerCase();
  if (base === '.env' || base.startsWith('.env.')) return envFormat;
  return FORMATS.find((f) => f.fileNames?.includes(base) || f.extensions.some((ext) => base.endsWith(ext)));
}

/** The format with this name (as written in a rule's `format:`), or undefined for an unknown name. */
export function formatNamed(name: KeyedFormatName | string): DocumentFormat | undefined {
  return FORMATS.find((f) => f.name === name);
}

/** How the known formats are chosen, for error messages. */
export const FORMAT_HINT = '.json, .yaml/.yml, .ini/.cfg, .env (or a file named .env or .env.*); other files need format: json|yaml|ini|env, or replace rules';
