import { getKey, isTree, setKey } from '../dotted-keys.ts';
import type { Tree } from '../dotted-keys.ts';
import type { DocumentFormat, EditableDocument } from './format.ts';
import { UnderstudyError } from '../../shared/errors.ts';

/**
 * JSON documents whose top level is an object. Written back in the file's own
 * layout as far as JSON.stringify can: its indent (spaces or a tab; none for a
 * one-line file), its line ending and whether it ends with one. A new file gets a
 * 2-space indent and a final newline. Key order is kept (JavaScript puts keys that
 * are whole numbers first). Values keep their JSON types.
 */
export const jsonFormat: DocumentFormat = {
  name: 'json',
  extensions: ['.json'],
  normalize: (value) => value,
  open(text: string): EditableDocument {
    const doc = parse(text);
    const layout = layoutOf(text);
    return {
      get: (key) => getKey(doc, key),
      set: (key, value) => setKey(doc, key, value),
      text: () => {
        const body = JSON.stringify(doc, null, layout.indent);
        return (layout.eol === '\n' ? body : body.replaceAll('\n', layout.eol)) + (layout.final ? layout.eol : '');
      },
    };
  },
};

function parse(text: string): Tree {
  if (text.trim() === '') return {};
  const doc: unknown = JSON.parse(text);
  if (!isTree(doc)) throw new UnderstudyError('US_TRANSFORM_FAILED', 'the top level is not a JSON object');
  return doc;
}

function layoutOf(text: string): { indent: string | undefined; eol: string; final: boolean } {
  if (text.trim() === '') return { indent: '  ', eol: '\n', final: true };
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const body = text.trimEnd();
  const indent = body.includes('\n') ? (/\n([ \t]+)\S/.exec(body)?.[1] ?? '  ') : undefined;
  return { indent, eol, final: text.endsWith('\n') };
}
