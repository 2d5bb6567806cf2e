import { UnderstudyError } from '../shared/errors.ts';
/**
 * Dotted keys into a tree of plain objects: "listen.host" is `doc.listen.host`.
 * Shared by every document format (JSON today; YAML, INI and .env later map their
 * sections and keys onto the same tree).
 */

export type Tree = Record<string, unknown>;

export function splitKey(key: string): string[] {
  const parts = key.split('.');
  if (parts.some((p) => p === '')) throw new UnderstudyError('US_TRANSFORM_FAILED', `bad key "${key}": empty part`);
  if (parts.some((p) => p === '__proto__' || p === 'constructor' || p === 'prototype')) {
    throw new UnderstudyError('US_TRANSFORM_FAILED', `bad key "${key}": reserved name`);
  }
  return parts;
}

/** The value at `key`, or undefined when any part of the way is missing. */
export function getKey(doc: Tree, key: string): unknown {
  let node: unknown = doc;
  for (const part of splitKey(key)) {
    if (!isTree(node) || !Object.hasOwn(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

/**
 * Sets `key` to `value`, creating missing intermediate objects. Throws when a part
 * of the way exists and is not an object (it would have to be overwritten).
 */
export function setKey(doc: Tree, key: string, value: unknown): void {
  const parts = splitKey(key);
  let node: Tree = doc;
  for (const [i, part] of parts.slice(0, -1).entries()) {
    const next = Object.hasOwn(node, part) ? node[part] : undefined;
    if (next === undefined) {
      const created: Tree = {};
      node[part] = created;
      node = created;
    } else if (isTree(next)) {
      node = next;
    } else {
      throw new UnderstudyError('US_TRANSFORM_FAILED', `cannot set "${key}": "${parts.slice(0, i + 1).join('.')}" is ${JSON.stringify(next)}, not an object`);
    }
  }
  node[parts[parts.length - 1] as string] = value;
}

export function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
