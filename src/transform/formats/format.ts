import type { Tree } from '../dotted-keys.ts';

/**
 * A kind of configuration file the transform engine can edit. A format turns the
 * file's text into a tree of plain values (edited with dotted keys) and back. To
 * add YAML, INI or .env: implement this and register it in `formats/index.ts`.
 */
export interface DocumentFormat {
  readonly name: string;
  /** File name endings this format handles, lower case (".json"). */
  readonly extensions: readonly string[];
  /** Parses text; throws an Error with a human-readable message when it is not valid. */
  parse(text: string): Tree;
  /** Serializes a tree; the result parses back to an equal tree. */
  stringify(doc: Tree): string;
}
