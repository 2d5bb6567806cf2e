import type { DocumentFormat, EditableDocument } from './format.ts';
import { appendLine, eolOf, normalizeText } from './text-values.ts';
import { UnderstudyError } from '../../shared/errors.ts';

/**
 * `.env` files: `KEY=VALUE` lines (optionally `export KEY=VALUE`), `#` comments.
 * Edited in place: only the changed value's characters change; comments, order,
 * spacing and line endings stay byte-identical.
 *
 * The rule's key is the variable's whole name (`DATABASE_URL`; dots are not
 * sections here). Values are text. Reading: `'…'` is literal, `"…"` understands
 * `\n`, `\"` and `\\` (and may span lines), an unquoted value ends at ` #` (an inline
 * comment, kept). Writing keeps the value's quotes where they can hold the new value;
 * an unquoted value is written bare when it is only letters, digits and `_ . , : / @ % + = ~ -`,
 * else in single quotes (no `$` expansion by any loader), or double quotes with
 * escapes when it holds `'` or a line break. A key that appears twice is refused; a
 * missing key is added at the end of the file.
 */
export const envFormat: DocumentFormat = {
  name: 'env',
  extensions: ['.env'],
  fileNames: ['.env'],
  normalize: (value) => normalizeText('.env', value),
  open: (text) => new EnvDocument(text),
};

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const LINE_RE = /^([ \t]*(?:export[ \t]+)?)([A-Za-z_][A-Za-z0-9_.-]*)([ \t]*=[ \t]*)/;
const BARE_RE = /^[A-Za-z0-9_.,:/@%+=~-]*$/;

interface Entry {
  key: string;
  value: string;
  start: number;
  end: number;
  quote: '' | '"' | "'" | '`';
}

class EnvDocument implements EditableDocument {
  private text_: string;
  private readonly eol: string;
  private entries: Entry[] = [];

  constructor(text: string) {
    this.text_ = text;
    this.eol = eolOf(text);
    this.scan();
  }

  get(key: string): unknown {
    return this.find(key)?.value;
  }

  set(key: string, raw: unknown): void {
    const value = normalizeText('.env', raw);
    const existing = this.find(key);
    if (existing !== undefined) {
      this.text_ = this.text_.slice(0, existing.start) + encode(value, existing.quote) + this.text_.slice(existing.end);
    } else {
      this.text_ = appendLine(this.text_, `${key}=${encode(value, '')}`, this.eol);
    }
    this.scan();
  }

  text(): string {
    return this.text_;
  }

  private find(key: string): Entry | undefined {
    if (!NAME_RE.test(key))
      throw new UnderstudyError('US_TRANSFORM_FAILED', `"${key}" is not a variable name (letters, digits, _ . and -, starting with a letter or _)`);
    const found = this.entries.filter((e) => e.key === key);
    if (found.length > 1) throw new UnderstudyError('US_TRANSFORM_FAILED', `key ${key} appears ${found.length} times; remove the duplicates`);
    return found[0];
  }

  private scan(): void {
    this.entries = [];
    const text = this.text_;
    let pos = 0;
    while (pos < text.length) {
      let lineEnd = text.indexOf('\n', pos);
      if (lineEnd === -1) lineEnd = text.length;
      const m = LINE_RE.exec(text.slice(pos, lineEnd));
      if (m) {
        const start = pos + m[0].length;
        const value = readValue(text, start, lineEnd);
        this.entries.push({ key: m[2] as string, ...value, start });
        lineEnd = Math.max(lineEnd, text.indexOf('\n', value.end) === -1 ? text.length : text.indexOf('\n', value.end));
      }
      pos = lineEnd + 1;
    }
  }
}

/** The value that starts at `start`: its text, where it ends (quotes included), its quote. */
function readValue(text: string, start: number, lineEnd: number): Omit<Entry, 'key' | 'start'> {
  const q = text[start];
  if (q === '"' || q === "'" || q === '`') {
    let i = start + 1;
    while (i < text.length && text[i] !== q) i += q === '"' && text[i] === '\\' ? 2 : 1;
    if (i < text.length) {
      const inner = text.slice(start + 1, i);
      const value = q === '"' ? inner.replace(/\\([\\"n])/g, (_, c: string) => (c === 'n' ? '\n' : c)) : inner;
      return { value: value.replace(/\r\n/g, '\n'), end: i + 1, quote: q };
    }
  }
  const line = text.slice(start, lineEnd).replace(/\r$/, '');
  const comment = /[ \t]+#/.exec(line);
  const value = (comment ? line.slice(0, comment.index) : line).trimEnd();
  return { value, end: start + value.length, quote: '' };
}

function encode(value: string, quote: Entry['quote']): string {
  const single = !value.includes("'") && !value.includes('\n');
  if (quote === "'" && single) return `'${value}'`;
  if (quote === '`' && !value.includes('`')) return `\`${value}\``;
  if (quote === '' && BARE_RE.test(value)) return value;
  if (quote !== '"' && single) return `'${value}'`;
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}
