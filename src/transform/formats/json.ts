import { isTree } from '../dotted-keys.ts';
import type { Tree } from '../dotted-keys.ts';
import type { DocumentFormat } from './format.ts';

/** JSON documents whose top level is an object; written with 2-space indent and a final newline. */
export const jsonFormat: DocumentFormat = {
  name: 'json',
  extensions: ['.json'],
  parse(text: string): Tree {
    if (text.trim() === '') return {};
    const doc: unknown = JSON.parse(text);
    if (!isTree(doc)) throw new Error('the top level is not a JSON object');
    return doc;
  },
  stringify(doc: Tree): string {
    return `${JSON.stringify(doc, null, 2)}\n`;
  },
};
