import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const root = new URL('../../../', import.meta.url);
const src = new URL('src/', root).pathname;

/** Every `.ts` file under `src/`. */
function sources(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/**
 * The argument text of every `addEvent(…)` call of a file, up to its closing parenthesis.
 * Only these are read, so the `kind:` of a runbook, a probe or a manifest never counts.
 */
function addEventArguments(text: string): string[] {
  const out: string[] = [];
  for (let i = text.indexOf('addEvent('); i >= 0; i = text.indexOf('addEvent(', i + 1)) {
    let depth = 1;
    let j = i + 'addEvent('.length;
    for (; j < text.length && depth > 0; j++) {
      if ('([{'.includes(text[j]!)) depth++;
      else if (')]}'.includes(text[j]!)) depth--;
    }
    out.push(text.slice(i + 'addEvent('.length, j - 1));
  }
  return out;
}

/**
 * Kinds the code records without a string literal inside its `addEvent(…)` call: the
 * event object is built beside the call, or its kind is computed. Keep this list short,
 * and name where each comes from.
 */
const COMPUTED_KINDS = [
  'power-off', // controller.ts: `power-${action}` for an operator's `power HOST on|off`
  'pool-refilled', // pool-watch.ts: the event object is built before store.addEvent(event)
  'spare-denied', // target-choice.ts: kind: d.event, from spare-pool.ts ('pool-empty' | 'spare-denied')
];

/** Every event kind recorded in src/: the quoted kinds inside addEvent calls, plus the computed ones. */
function recordedKinds(): Set<string> {
  const kinds = new Set(COMPUTED_KINDS);
  for (const file of sources(src)) {
    for (const arg of addEventArguments(fs.readFileSync(file, 'utf8'))) {
      // `kind: 'failover-started'`, `kind: ok ? 'drill-complete' : 'drill-failed'`: every quoted kind of the `kind:` expression.
      const expr = /\bkind:\s*([^,\n]+)/.exec(arg)?.[1] ?? '';
      for (const m of expr.matchAll(/['`]([a-z][a-z0-9-]*)['`]/g)) kinds.add(m[1]!);
    }
  }
  return kinds;
}

/** The kinds named in the first column of the event table of docs/operations.md. */
function documentedKinds(): Set<string> {
  const doc = fs.readFileSync(new URL('docs/operations.md', root), 'utf8');
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => l.startsWith('| kind | recorded when |'));
  assert.ok(start >= 0, 'docs/operations.md has an event table (| kind | recorded when | data |)');
  const kinds = new Set<string>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const first = line.split(' | ')[0]!;
    for (const m of first.matchAll(/`([a-z][a-z0-9-]*)`/g)) kinds.add(m[1]!);
  }
  return kinds;
}

test('the event scan finds the kinds it must (a guard against a scan that finds nothing)', () => {
  const kinds = recordedKinds();
  for (const k of ['failure-detected', 'failover-complete', 'drill-complete', 'drill-failed', 'failover-blocked', 'notify-failing', 'power-observed'])
    assert.ok(kinds.has(k), `${k} is found in src/`);
  for (const k of ['wal-frame', 'process-gone', 'conn-error', 'differential']) assert.ok(!kinds.has(k), `${k} is no event kind`);
});

test('docs/operations.md lists every event kind the code records in its event table', () => {
  const documented = documentedKinds();
  const missing = [...recordedKinds()].filter((k) => !documented.has(k)).sort();
  assert.deepEqual(missing, [], `event kinds without a row in docs/operations.md: ${missing.join(', ')}`);
});

test('every row of the event table of docs/operations.md is a kind the code records', () => {
  const recorded = recordedKinds();
  const extra = [...documentedKinds()].filter((k) => !recorded.has(k)).sort();
  assert.deepEqual(extra, [], `rows of docs/operations.md for kinds the code never records: ${extra.join(', ')}`);
});
