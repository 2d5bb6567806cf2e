import type { TransformChange } from '../shared/contracts.ts';

const MAX_VALUE = 120;

/**
 * Renders transform changes as compact text for events and logs, one line per
 * change, in order: `file: key from → to`, e.g.
 *
 *   config/site.json: listen.host 127.0.1.1 → 127.0.3.1
 *   config/site.json: limits.memoryMb (absent) → 2048
 *   conf/nginx.conf: /(?<=listen )\S+/ 127.0.1.1:80; → 127.0.3.1:80;
 *
 * A value is shown bare when it is a number, true/false, null or text without
 * spaces or quotes, else as JSON ("a b", "", {"x":1}); an absent one as `(absent)`.
 * Values longer than 120 characters are cut with `…`. No changes: the empty string.
 */
export function formatTransformDiff(changes: readonly TransformChange[]): string {
  return changes.map((c) => `${c.file}: ${c.key} ${show(c.from)} → ${show(c.to)}`).join('\n');
}

function show(v: unknown): string {
  if (v === undefined) return '(absent)';
  const text = typeof v === 'string' && /^[^\s"'→]+$/.test(v) ? v : (JSON.stringify(v) ?? String(v));
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE - 1)}…` : text;
}
