import { splitKey } from '../dotted-keys.ts';
import type { DocumentFormat, EditableDocument } from './format.ts';
import { appendLine, eolOf, normalizeText, quoteSimple } from './text-values.ts';
import { UnderstudyError } from '../../shared/errors.ts';

/**
 * INI files (`.ini`, `.cfg`): `[section]` headers, `key = value` (or `key: value`)
 * entries, `;` and `#` comment lines. Edited in place: only the changed value's
 * characters change, everything else (comments, order, spacing, line endings) stays
 * byte-identical.
 *
 * Keys: the first dotted part names the section, the rest the key in it
 * (`server.port` is `port` in `[server]`); when a section whose name has dots exists
 * (`[server.http]`), the longest such name wins (`server.http.port`). A key without a
 * dot is a global one, before the first section.
 *
 * Values are text: quotes around a value (`"…"` or `'…'`) are not part of it and are
 * kept on change; a new value is quoted only when it needs it (spaces at its ends, a
 * leading quote, `;` or `#` that would read as a comment). An inline comment
 * (whitespace then `;` or `#` after an unquoted value) is kept. A key that appears
 * twice in a section is refused, as are values with a line break. A missing key is
 * added after the last entry of its section; a missing section at the end of the file.
 */
export const iniFormat: DocumentFormat = {
  name: 'ini',
  extensions: ['.ini', '.cfg'],
  normalize: (value) => normalizeText('INI', value),
  open: (text) => new IniDocument(text),
};

interface Entry {
  section: string;
  key: string;
  value: string;
  /** Offsets of the value as written (quotes included) in the text. */
  start: number;
  end: number;
  quote: '' | '"' | "'";
  /** Offset just past the entry's line content (before its line ending). */
  lineEnd: number;
}

interface Section {
  name: string;
  /** Offset just past the header line's content. */
  headerEnd: number;
  /** Offset where the header line starts. */
  headerStart: number;
}

const SECTION_RE = /^\s*\[([^\]]*)\]\s*(?:[;#].*)?$/;
const ENTRY_RE = /^(\s*)([^\s=:;#[][^=:]*?)(\s*[=:]\s*)(.*)$/;

class IniDocument implements EditableDocument {
  private text_: string;
  private readonly eol: string;
  private entries: Entry[] = [];
  private sections: Section[] = [];
  /** How the first entry separates key and value (" = " by default). */
  private separator = ' = ';

  constructor(text: string) {
    this.text_ = text;
    this.eol = eolOf(text);
    this.scan();
    const first = ENTRY_RE.exec(this.lineAt(this.entries[0]?.start));
    if (first?.[3] !== undefined && first[4] !== '') this.separator = first[3];
  }

  get(key: string): unknown {
    return this.find(key)?.value;
  }

  set(key: string, raw: unknown): void {
    const value = normalizeText('INI', raw);
    if (/[\r\n]/.test(value)) throw new UnderstudyError('US_TRANSFORM_FAILED', `INI values cannot hold a line break (key ${key})`);
    const existing = this.find(key);
    if (existing !== undefined) {
      const written = existing.quote !== '' ? quoteSimple('INI', value, existing.quote) : encode(value);
      this.text_ = this.text_.slice(0, existing.start) + written + this.text_.slice(existing.end);
    } else {
      this.insert(key, encode(value));
    }
    this.scan();
  }

  text(): string {
    return this.text_;
  }

  /** The section and key a dotted key names. */
  private resolve(key: string): { section: string; name: string } {
    const parts = splitKey(key);
    if (parts.length === 1) return { section: '', name: key };
    for (let n = parts.length - 1; n >= 1; n--) {
      const section = parts.slice(0, n).join('.');
      if (this.sections.some((s) => s.name === section)) return { section, name: parts.slice(n).join('.') };
    }
    return { section: parts[0] as string, name: parts.slice(1).join('.') };
  }

  private find(key: string): Entry | undefined {
    const { section, name } = this.resolve(key);
    const found = this.entries.filter((e) => e.section === section && e.key === name);
    if (found.length > 1)
      throw new UnderstudyError(
        'US_TRANSFORM_FAILED',
        `key ${key} appears ${found.length} times${section === '' ? '' : ` in [${section}]`}; remove the duplicates`,
      );
    return found[0];
  }

  private insert(key: string, written: string): void {
    const { section, name } = this.resolve(key);
    const line = `${name}${this.separator}${written}`;
    const inSection = this.entries.filter((e) => e.section === section);
    const last = inSection[inSection.length - 1];
    const header = this.sections.filter((s) => s.name === section).pop();
    let at: number | undefined;
    if (last !== undefined) at = last.lineEnd;
    else if (header !== undefined) at = header.headerEnd;
    else if (section === '' && this.sections[0] !== undefined) {
      // A new global key goes before the first section, and before the comments that introduce it.
      at = this.sections[0].headerStart;
      const before = this.text_.slice(0, at).split('\n');
      before.pop();
      while (before.length > 0 && /^\s*([;#].*)?\r?$/.test(before[before.length - 1] as string)) before.pop();
      const start = before.length === 0 ? 0 : before.join('\n').length + 1;
      this.text_ = `${this.text_.slice(0, start)}${line}${this.eol}${this.text_.slice(start)}`;
      return;
    }
    if (at !== undefined) {
      this.text_ = `${this.text_.slice(0, at)}${this.eol}${line}${this.text_.slice(at)}`;
      return;
    }
    if (section === '') {
      this.text_ = appendLine(this.text_, line, this.eol);
      return;
    }
    let body = this.text_.trim() === '' ? '' : this.text_.endsWith('\n') ? this.text_ : this.text_ + this.eol;
    if (body !== '' && !/\n\s*\n$/.test(body)) body += this.eol; // a blank line before the new section
    this.text_ = `${body}[${section}]${this.eol}${line}${this.eol}`;
  }

  private lineAt(offset: number | undefined): string {
    if (offset === undefined) return '';
    const start = this.text_.lastIndexOf('\n', offset - 1) + 1;
    const end = this.text_.indexOf('\n', offset);
    return this.text_.slice(start, end === -1 ? undefined : end).replace(/\r$/, '');
  }

  private scan(): void {
    this.entries = [];
    this.sections = [];
    let section = '';
    let offset = 0;
    for (const rawLine of this.text_.split('\n')) {
      const line = rawLine.replace(/\r$/, '');
      const lineStart = offset;
      offset += rawLine.length + 1;
      if (/^\s*([;#].*)?$/.test(line)) continue;
      const header = SECTION_RE.exec(line);
      if (header) {
        section = (header[1] ?? '').trim();
        this.sections.push({ name: section, headerStart: lineStart, headerEnd: lineStart + line.length });
        continue;
      }
      const m = ENTRY_RE.exec(line);
      if (!m) continue; // a line that is none of the above (a bare flag): kept as it is
      const valueStart = lineStart + (m[1] ?? '').length + (m[2] ?? '').length + (m[3] ?? '').length;
      const { value, length, quote } = decode(m[4] ?? '');
      this.entries.push({ section, key: (m[2] ?? '').trim(), value, start: valueStart, end: valueStart + length, quote, lineEnd: lineStart + line.length });
    }
  }
}

/** The value at the start of `rest` (what follows `=`): its text, how many characters it spans, its quote. */
function decode(rest: string): { value: string; length: number; quote: '' | '"' | "'" } {
  const q = rest[0];
  if (q === '"' || q === "'") {
    const close = rest.indexOf(q, 1);
    if (close !== -1 && /^\s*([;#].*)?$/.test(rest.slice(close + 1))) return { value: rest.slice(1, close), length: close + 1, quote: q };
  }
  const comment = /\s+[;#]/.exec(rest);
  const value = (comment ? rest.slice(0, comment.index) : rest).trimEnd();
  return { value, length: value.length, quote: '' };
}

/** A value as written without quotes when it reads back as itself, else quoted. */
function encode(value: string): string {
  const needs = value !== value.trim() || /^["';#]/.test(value) || /\s[;#]/.test(value);
  return needs ? quoteSimple('INI', value) : value;
}
