import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { runValidate } from '../../../src/cli/validate-command.ts';
import { MINIMAL, cleanup, writeYaml } from './helpers.ts';

after(cleanup);

/** Runs `fn` capturing what it writes to stdout and stderr. */
function capture(fn: () => number): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => {
    err += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: fn(), out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

test('validate: ok line and exit 0 for the demo', () => {
  const r = capture(() => runValidate('examples/demo.yaml'));
  assert.equal(r.code, 0);
  assert.equal(r.out, 'ok: examples/demo.yaml (2 sites, 4 hosts)\n');
  assert.equal(r.err, '');
});

test('validate: one file:line:col: path: message line per problem, exit 1', () => {
  const file = writeYaml(MINIMAL.replace('primary: h1', 'primary: h9').replace('node, server.js', 'node, server.js, 3'));
  const r = capture(() => runValidate(file));
  assert.equal(r.code, 1);
  assert.equal(r.out, '');
  assert.deepEqual(r.err.trimEnd().split('\n'), [
    `${file}:12:39: sites.shop.app.command[2]: must be a non-empty string`,
    `${file}:13:14: sites.shop.primary: unknown host h9 (known: h1, h2, h3)`,
  ]);
});

test('validate: a missing file says which and how to pass one', () => {
  const r = capture(() => runValidate('missing.yaml'));
  assert.equal(r.code, 1);
  assert.match(r.err, /missing\.yaml.*-c FILE/);
});
