import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseDuration } from '../../../src/config/duration.ts';
import { parseEndpoint } from '../../../src/config/endpoint.ts';

test('durations: units and fractions become whole milliseconds', () => {
  assert.equal(parseDuration('200ms'), 200);
  assert.equal(parseDuration('5s'), 5000);
  assert.equal(parseDuration('1m'), 60_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration(' 2s '), 2000);
  assert.equal(parseDuration('0.5ms'), 1);
});

test('durations: bare numbers and nonsense are refused', () => {
  for (const bad of [200, '200', '', 's', '5 s', '5sec', '-1s', '1.s', 'ms200', null, undefined, '1s2']) {
    assert.equal(parseDuration(bad), undefined, `refuses ${JSON.stringify(bad)}`);
  }
});

test('durations: formatted back for messages', () => {
  assert.equal(formatDuration(200), '200ms');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(120_000), '2m');
});

test('endpoints: IPv4 and bracketed IPv6 with a port', () => {
  assert.deepEqual(parseEndpoint('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(parseEndpoint('[::1]:7070'), { host: '::1', port: 7070 });
  for (const bad of ['localhost:80', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '300.0.0.1:80', '::1:80', '[127.0.0.1]:80', 8080]) {
    assert.equal(parseEndpoint(bad), undefined, `refuses ${JSON.stringify(bad)}`);
  }
});
