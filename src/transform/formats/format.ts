import type { TransformFormat } from '../../config/types.ts';

/**
 * A kind of configuration file whose settings the transform engine edits by dotted
 * key (`set` rules). A format opens a file's text as an editable document; the
 * document changes only the values it is told to and gives the text back — with
 * comments, order and (where the format allows) every other byte kept.
 * To add a format: implement this and register it in `formats/index.ts`.
 */
export interface DocumentFormat {
  /** The name an explicit `format:` on a rule uses. */
  readonly name: KeyedFormatName;
  /** File name endings this format handles, lower case (".json"). */
  readonly extensions: readonly string[];
  /** Whole file names (lower case) this format handles whatever their ending (".env"). */
  readonly fileNames?: readonly string[];
  /**
   * The value as this format stores it, used to compare and to report changes:
   * text-only formats (INI, .env) turn numbers and true/false into text. Throws an
   * Error for a value the format cannot hold (an object in INI).
   */
  normalize(value: unknown): unknown;
  /** Opens text (empty for a file that does not exist yet); throws an Error saying why when it is not valid. */
  open(text: string): EditableDocument;
}

/** A file's settings, open for editing. Keys are dotted (`listen.host`). */
export interface EditableDocument {
  /** The value at `key` (normalized as the format stores it), or undefined when absent. */
  get(key: string): unknown;
  /** Sets `key`, creating what is missing; throws an Error saying why it cannot. */
  set(key: string, value: unknown): void;
  /** The document's text now. */
  text(): string;
}

/** Every `format:` a rule may name: `text` is the format of `replace` rules. */
export type FormatName = TransformFormat;
/** Formats edited by dotted key (`set` rules). */
export type KeyedFormatName = Exclude<FormatName, 'text'>;
export const FORMAT_NAMES = ['json', 'yaml', 'ini', 'env', 'text'] as const satisfies readonly FormatName[];
