import { LineCounter, isAlias, isMap, isPair, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';

/**
 * A parsed YAML file that remembers where every value came from, so that a
 * problem found later (by the schema or a reference check) can be reported as
 * `file:line:col`. `locate()` walks the YAML tree along a config path.
 */
export interface YamlSource {
  /** The plain data (aliases resolved), or undefined when the file did not parse. */
  data: unknown;
  /** Syntax errors, each with its 1-based line and column. */
  syntaxErrors: { line: number; col: number; message: string }[];
  /**
   * Position of the value at `path` (or of its key with `at: 'key'`). When the path
   * does not exist, the position of the deepest map or list that does (where the
   * missing key belongs).
   */
  locate(path: readonly PropertyKey[], at?: 'value' | 'key'): { line: number; col: number };
}

export function parseYamlSource(text: string): YamlSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const pos = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);

  const syntaxErrors = doc.errors.map((e) => ({ ...pos(e.pos[0]), message: `YAML: ${firstLine(e.message)}` }));
  let data: unknown;
  if (syntaxErrors.length === 0) {
    try {
      data = doc.toJS({ maxAliasCount: 1000 });
    } catch (e) {
      syntaxErrors.push({ line: 1, col: 1, message: `YAML: ${firstLine((e as Error).message)}` });
    }
  }

  function locate(path: readonly PropertyKey[], at: 'value' | 'key' = 'value'): { line: number; col: number } {
    let node: YamlNode | null = (doc.contents as YamlNode | null) ?? null;
    let keyNode: YamlNode | null = null;
    if (node === null) return { line: 1, col: 1 };
    for (const seg of path) {
      node = resolve(doc, node);
      const child = childOf(node, seg);
      // A missing key belongs to this map: point at the map's own key when it has one
      // (`outlet:`), which reads better than the map's first entry.
      if (child === undefined) return startOf(keyNode ?? node, pos);
      keyNode = child.key;
      if (child.value === null || isEmptyScalar(child.value)) {
        // `key:` with nothing after it: the key is the place to point at.
        return keyNode !== null ? startOf(keyNode, pos) : startOf(node, pos);
      }
      node = child.value;
    }
    if (at === 'key' && keyNode !== null) return startOf(keyNode, pos);
    return startOf(node, pos);
  }

  return { data, syntaxErrors, locate };
}

function firstLine(message: string): string {
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '');
}

function resolve(doc: Document, node: YamlNode): YamlNode {
  return isAlias(node) ? ((node.resolve(doc) as YamlNode | undefined) ?? node) : node;
}

function childOf(node: YamlNode, seg: PropertyKey): { key: YamlNode | null; value: YamlNode | null } | undefined {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const k = pair.key as YamlNode | null;
      const name = isScalar(k) ? String(k.value) : k === null ? '' : String(k);
      if (name === String(seg)) return { key: k, value: (pair.value as YamlNode | null) ?? null };
    }
    return undefined;
  }
  if (isSeq(node) && typeof seg === 'number') {
    const item = node.items[seg] as YamlNode | undefined;
    return item === undefined ? undefined : { key: null, value: item };
  }
  return undefined;
}

function isEmptyScalar(node: YamlNode): boolean {
  return isScalar(node) && node.value === null && node.range !== undefined && node.range !== null && node.range[0] === node.range[1];
}

function startOf(node: YamlNode, pos: (offset: number) => { line: number; col: number }): { line: number; col: number } {
  const range = node.range;
  return range ? pos(range[0]) : { line: 1, col: 1 };
}
