import { Composer, CST, Document, Parser, isMap, isNode, isScalar, stringify } from 'yaml';
import type { Scalar } from 'yaml';
import { isDeepStrictEqual } from 'node:util';
import { splitKey } from '../dotted-keys.ts';
import type { DocumentFormat, EditableDocument } from './format.ts';
import { UnderstudyError } from '../../shared/errors.ts';

/**
 * YAML documents (one per file) whose top level is a map, edited with the `yaml`
 * package's Document API so that comments and key order are kept.
 *
 * Changing a value that is already there rewrites only that value in the source
 * (its quoting style kept where the new value allows it): the rest of the file stays
 * byte-identical. Adding a key (or setting a map or a list) re-emits the document
 * through the Document API: comments and order are kept, but spacing inside lines may
 * be normalized (`[a, b]` → `[ a, b ]`). Values keep their YAML types.
 */
export const yamlFormat: DocumentFormat = {
  name: 'yaml',
  extensions: ['.yaml', '.yml'],
  normalize: (value) => value,
  open: openYaml,
};

function openYaml(text: string): EditableDocument {
  const tokens = Array.from(new Parser().parse(text));
  const docs = Array.from(new Composer({ keepSourceTokens: true }).compose(tokens));
  if (docs.length > 1) throw new UnderstudyError('US_TRANSFORM_FAILED', `it holds ${docs.length} documents; only one is supported`);
  const doc: Document.Parsed | undefined = docs[0];
  const problem = doc?.errors[0];
  if (problem !== undefined) throw new UnderstudyError('US_TRANSFORM_FAILED', problem.message.split('\n')[0] ?? problem.message);
  if (doc !== undefined && doc.contents !== null && !isMap(doc.contents)) throw new UnderstudyError('US_TRANSFORM_FAILED', 'the top level is not a YAML map');

  /** Set once the document is re-emitted through the Document API (a key added, or an empty file). */
  let restructured: Document | undefined = doc === undefined ? new Document({}) : doc.contents === null ? doc : undefined;
  const current = (): Document => restructured ?? (doc as Document);

  return {
    get(key) {
      const node: unknown = current().getIn(splitKey(key), true);
      return isNode(node) ? node.toJSON() : node;
    },
    set(key, value) {
      const parts = splitKey(key);
      const d = current();
      for (let i = 1; i < parts.length; i++) {
        const node: unknown = d.getIn(parts.slice(0, i), true);
        if (node !== undefined && !isMap(node)) {
          const shown = isNode(node) ? node.toJSON() : node;
          throw new UnderstudyError('US_TRANSFORM_FAILED', `cannot set "${key}": "${parts.slice(0, i).join('.')}" is ${JSON.stringify(shown)}, not a map`);
        }
      }
      const node: unknown = d.getIn(parts, true);
      if (restructured === undefined && isScalar(node) && node.srcToken !== undefined && isScalarValue(value)) {
        CST.setScalarValue(node.srcToken, typeof value === 'string' ? value : String(value), { type: styleFor(value, node) });
        node.value = value;
        return;
      }
      restructured = d;
      d.setIn(parts, value);
    },
    text() {
      if (restructured !== undefined) return restructured.toString();
      const edited = tokens.map((t) => CST.stringify(t)).join('');
      // In-place edits must read back as the values set; should quoting ever go wrong, re-emit instead.
      const check = Array.from(new Composer().compose(new Parser().parse(edited)));
      const d = doc as Document;
      if (check.length === 1 && check[0]?.errors.length === 0 && isDeepStrictEqual(check[0].toJS(), d.toJS())) return edited;
      return d.toString();
    },
  };
}

type ScalarValue = string | number | boolean | null;

function isScalarValue(v: unknown): v is ScalarValue {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/** Keeps the node's quoting where the value allows it; a string that would not read back as itself in plain style is double-quoted. */
function styleFor(value: ScalarValue, node: Scalar): Scalar.Type {
  if (typeof value !== 'string') return 'PLAIN';
  const was = node.type ?? 'PLAIN';
  const plainSafe = !value.includes('\n') && stringify(value).trimEnd() === value && value !== '';
  if (was === 'PLAIN') return plainSafe ? 'PLAIN' : 'QUOTE_DOUBLE';
  if (was === 'QUOTE_SINGLE' || was === 'QUOTE_DOUBLE') return was;
  if (value.includes('\n')) return was; // a block scalar stays one
  return plainSafe ? 'PLAIN' : 'QUOTE_DOUBLE';
}
