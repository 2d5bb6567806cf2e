import { UnderstudyError } from '../../shared/errors.ts';
/** Shared by the text-only formats (INI, .env): every value is text. */

/** Numbers and true/false become their text, null the empty text; other values cannot be held. */
export function normalizeText(format: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return '';
  throw new UnderstudyError('US_TRANSFORM_FAILED', `${format} values are text: cannot write ${JSON.stringify(value)}`);
}

/** The line ending a file uses ("\r\n" when it has any, else "\n"). */
export function eolOf(text: string): string {
  return text.includes('\r\n') ? '\r\n' : '\n';
}

/** `text` with `line` added at its end, on a line of its own. */
export function appendLine(text: string, line: string, eol: string): string {
  if (text === '') return `${line}${eol}`;
  return `${text.endsWith('\n') ? text : text + eol}${line}${eol}`;
}

/** Quotes a value with `"` or, when it holds `"`, with `'`; throws when it holds both. */
export function quoteSimple(format: string, value: string, prefer: '"' | "'" = '"'): string {
  const other = prefer === '"' ? "'" : '"';
  if (!value.includes(prefer)) return `${prefer}${value}${prefer}`;
  if (!value.includes(other)) return `${other}${value}${other}`;
  throw new UnderstudyError('US_TRANSFORM_FAILED', `${format} cannot hold a value with both ' and " that needs quoting: ${JSON.stringify(value)}`);
}
