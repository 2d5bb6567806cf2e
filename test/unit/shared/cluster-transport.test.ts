import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { request } from 'undici';
import { bearerOf, partPath, requireClusterSecret, secretMatches, type PartSecurity } from '../../../src/shared/cluster-transport.ts';
import { createHash } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s).digest();

test('the secret is compared as a whole (constant time on digests): prefix, suffix, case and empty are refused', () => {
  const d = digest('s3cret-0123456789abcdef');
  assert.equal(secretMatches('s3cret-0123456789abcdef', d), true);
  for (const wrong of ['s3cret-0123456789abcde', 's3cret-0123456789abcdefX', 'S3CRET-0123456789ABCDEF', '', null])
    assert.equal(secretMatches(wrong, d), false, String(wrong));
});

test('bearerOf reads "Bearer X" only', () => {
  assert.equal(bearerOf({ authorization: 'Bearer abc' }), 'abc');
  assert.equal(bearerOf({ authorization: 'bearer abc ' }), 'abc');
  assert.equal(bearerOf({ authorization: 'Basic abc' }), null);
  assert.equal(bearerOf({}), null);
});

test('requireClusterSecret: none, wrong and right, each with its own message; nothing required without a secret', () => {
  const sec: PartSecurity = { secretDigest: digest('right-secret-0123456789'), tls: null };
  assert.throws(() => requireClusterSecret(sec, {}, 'storage a'), { code: 'US_UNAUTHORIZED', message: /storage a refuses a call without credentials/ });
  assert.throws(() => requireClusterSecret(sec, { authorization: 'Bearer nope-0123456789abcdef' }, 'storage a'), {
    code: 'US_UNAUTHORIZED',
    message: /wrong cluster secret/,
  });
  assert.doesNotThrow(() => requireClusterSecret(sec, { authorization: 'Bearer right-secret-0123456789' }, 'storage a'));
  assert.doesNotThrow(() => requireClusterSecret({ secretDigest: null, tls: null }, {}, 'storage a'));
  assert.doesNotThrow(() => requireClusterSecret(null, {}, 'storage a'));
});

test("{{part}} in a certificate path is the part's name", () => {
  assert.equal(partPath('/etc/us/{{part}}.pem', 'array-a'), '/etc/us/array-a.pem');
  assert.equal(partPath('/etc/us/shared.pem', 'h1'), '/etc/us/shared.pem');
});

test("installed transport: calls to the config's internal endpoints carry the secret; calls to anything else (an app, a webhook) never do", async (t) => {
  const seen: { port: number; auth: string | undefined }[] = [];
  const mk = () =>
    http.createServer((req, res) => {
      seen.push({ port: (req.socket.address() as AddressInfo).port, auth: req.headers.authorization });
      res.end('{}');
    });
  const internal = mk();
  const app = mk();
  await Promise.all([new Promise<void>((r) => internal.listen(0, '127.0.0.1', r)), new Promise<void>((r) => app.listen(0, '127.0.0.1', r))]);
  t.after(() => {
    internal.close();
    app.close();
  });
  const ip = (internal.address() as AddressInfo).port;
  const ap = (app.address() as AddressInfo).port;
  const { installClusterTransport, clusterDispatcher } = await import('../../../src/shared/cluster-dispatcher.ts');
  process.env.US_TEST_CLUSTER_SECRET = 'unit-secret-0123456789abcdef';
  installClusterTransport({
    controller: { listen: { host: '127.0.0.1', port: ip }, members: {} },
    director: { listen: { host: '127.0.0.1', port: 1 }, members: {} },
    storage: {},
    hosts: {},
    cluster: { secret: { env: 'US_TEST_CLUSTER_SECRET' }, tls: null },
  } as never);
  await (await request(`http://127.0.0.1:${ip}/v1/status`, { dispatcher: clusterDispatcher(), headers: { authorization: 'Bearer caller-own' } })).body.text();
  await (await request(`http://127.0.0.1:${ap}/healthz`)).body.text();
  await (await request(`http://127.0.0.1:${ap}/healthz`, { dispatcher: clusterDispatcher() })).body.text();
  assert.deepEqual(seen, [
    { port: ip, auth: 'Bearer unit-secret-0123456789abcdef' },
    { port: ap, auth: undefined },
    { port: ap, auth: undefined },
  ]);
});
