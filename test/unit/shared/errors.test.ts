import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ERROR_CODES, UnderstudyError, errorFromReply, isErrorCode, statusOf } from '../../../src/shared/errors.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import { JsonRouter, createJsonServer, listen } from '../../../src/shared/http-json.ts';

test('isErrorCode: the codes of the registry, nothing else', () => {
  for (const c of ERROR_CODES) assert.ok(isErrorCode(c), c);
  for (const x of ['US_NOPE', 'us_bad_request', '', 42, null, undefined, { code: 'US_INTERNAL' }]) assert.equal(isErrorCode(x), false, String(x));
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
});

test('every code has its HTTP status', () => {
  for (const c of ERROR_CODES) assert.ok([400, 401, 404, 409, 500, 502, 503, 504].includes(statusOf(c)), `${c}: ${statusOf(c)}`);
  assert.equal(statusOf('US_BAD_REQUEST'), 400);
  assert.equal(statusOf('US_SITE_BUSY'), 409);
  assert.equal(statusOf('US_INTERNAL'), 500);
});

test('a reply from another part: a known code is kept, an unknown one becomes US_INTERNAL and is named', () => {
  const known = errorFromReply({ code: 'US_SITE_BUSY', message: 'shop already has a runbook running', details: { a: 1 } }, 'fallback');
  assert.deepEqual([known.code, known.message, known.details], ['US_SITE_BUSY', 'shop already has a runbook running', { a: 1 }]);
  const unknown = errorFromReply({ code: 'US_FROM_THE_FUTURE', message: 'something new' }, 'fallback');
  assert.deepEqual([unknown.code, unknown.message], ['US_INTERNAL', 'something new [unknown code US_FROM_THE_FUTURE]']);
  const none = errorFromReply(undefined, 'http://x answered 502');
  assert.deepEqual([none.code, none.message], ['US_INTERNAL', 'http://x answered 502']);
});

test('callJson: the status comes from the registry, and the code crosses the wire checked', async (t) => {
  const router = new JsonRouter()
    .on('POST', '/busy', () => {
      throw new UnderstudyError('US_SITE_BUSY', 'busy');
    })
    .on('POST', '/odd', (_q, res) => {
      res.writeHead(418, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'US_ODD', message: 'odd' } }));
    });
  const server = createJsonServer(router);
  const addr: AddressInfo = await listen(server, '127.0.0.1', 0);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${addr.port}`;
  const raw = await new Promise<number>((resolve, reject) => {
    http
      .request(`${url}/busy`, { method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject)
      .end();
  });
  assert.equal(raw, 409);
  await assert.rejects(callJson(`${url}/busy`, { body: {} }), { code: 'US_SITE_BUSY', message: 'busy' });
  await assert.rejects(callJson(`${url}/odd`, { body: {} }), { code: 'US_INTERNAL', message: 'odd [unknown code US_ODD]' });
});

test('docs/operations.md lists every code in its troubleshooting table', () => {
  const doc = fs.readFileSync(new URL('../../../docs/operations.md', import.meta.url), 'utf8');
  const table = doc.slice(doc.indexOf('## Troubleshooting: error codes'));
  const rows = table
    .split('\n')
    .filter((l) => l.startsWith('| `US_'))
    .map((l) => l.split(' | ')[0]!);
  for (const c of ERROR_CODES) {
    assert.ok(
      rows.some((r) => r.includes(`\`${c}\``)),
      `${c} has no row`,
    );
  }
});
