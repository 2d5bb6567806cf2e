import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FENCING_HEADER, FencingGate } from '../../../src/shared/fencing.ts';
import { fencingFile, tokenKeptIn } from '../../../src/storage/fencing-file.ts';
import { JsonRouter, createJsonServer, listen } from '../../../src/shared/http-json.ts';
import { PartClients } from '../../../src/controller/clients.ts';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { freePort, makeConfig, tempDir, testLogger } from '../storage/helpers.ts';

/** A POST or GET to a part, with a fencing token or none; the status and the error code. */
async function send(url: string, method: string, token: string | null): Promise<{ status: number; code?: string; details?: unknown }> {
  const res = await fetch(url, { method, headers: token === null ? {} : { [FENCING_HEADER]: token }, ...(method === 'POST' ? { body: '{}' } : {}) });
  const body = (await res.json()) as { error?: { code?: string; details?: unknown } };
  return { status: res.status, ...(body.error?.code ? { code: body.error.code } : {}), ...(body.error?.details ? { details: body.error.details } : {}) };
}

test('a part refuses a command with a lower fencing token than it has seen; reads and calls without a token pass', async (t) => {
  let ran = 0;
  const refused: number[] = [];
  const router = new JsonRouter().on('POST', '/v1/do', () => ({ ran: ++ran })).on('GET', '/v1/status', () => ({ ok: true }));
  const server = createJsonServer(router, null, {
    security: null,
    part: 'the test part',
    fencing: new FencingGate('the test part', null, (token) => refused.push(token)),
  });
  const addr: AddressInfo = await listen(server, '127.0.0.1', 0);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${addr.port}`;

  assert.equal((await send(`${base}/v1/do`, 'POST', '5')).status, 200, 'the first token seen');
  const stale = await send(`${base}/v1/do`, 'POST', '4');
  assert.deepEqual(stale, { status: 409, code: 'US_STALE_LEADER', details: { token: 4, highest: 5 } });
  assert.equal(ran, 1, 'the refused command ran nothing');
  assert.deepEqual(refused, [4], 'the part was told (its log)');
  assert.equal((await send(`${base}/v1/status`, 'GET', '4')).status, 200, 'a read is never refused');
  assert.equal((await send(`${base}/v1/do`, 'POST', null)).status, 200, 'no token: not checked (one controller, no lease)');
  assert.equal((await send(`${base}/v1/do`, 'POST', '5')).status, 200, 'the same term goes on');
  assert.equal((await send(`${base}/v1/do`, 'POST', '7')).status, 200, 'a newer term');
  assert.equal((await send(`${base}/v1/do`, 'POST', '5')).code, 'US_STALE_LEADER', 'the term before it is refused now');
  assert.equal((await send(`${base}/v1/do`, 'POST', 'seven')).code, 'US_BAD_REQUEST');
  assert.equal(ran, 4);
});

test("the controller's calls carry its term's token while it has one", async (t) => {
  const seen: (string | undefined)[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers[FENCING_HEADER] as string | undefined);
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const config = makeConfig([{ name: 'array-a', path: '/nonexistent', port }]);
  let token: number | null = 12;
  const clients = new PartClients(config, () => token);
  await clients.promote('array-a', 'shop', 3);
  token = null; // the term ended
  await clients.promote('array-a', 'shop', 3);
  assert.deepEqual(seen, ['12', undefined]);
});

test('a storage processor keeps the highest token across a restart: the old leader is still refused', async (t) => {
  const root = tempDir('us-fencing-');
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const port = await freePort();
  const config = makeConfig([{ name: 'array-a', path: path.join(root, 'a'), port }]);
  const url = `http://127.0.0.1:${port}/v1/volumes/shop/promote`;
  let sp = new StorageProcessor(config, 'array-a', testLogger());
  t.after(() => sp.stop().catch(() => undefined));
  await sp.start();
  const first = await send(url, 'POST', '8');
  assert.notEqual(first.code, 'US_STALE_LEADER', 'the first token is taken (the promote itself fails: no such volume)');
  assert.equal(fs.readFileSync(fencingFile(path.join(root, 'a')), 'utf8').trim(), '8', 'kept on disk before the command ran');
  await sp.stop();

  sp = new StorageProcessor(config, 'array-a', testLogger());
  await sp.start();
  assert.equal((await send(url, 'POST', '7')).code, 'US_STALE_LEADER', 'after the restart, the older term is still refused');
  assert.notEqual((await send(url, 'POST', '9')).code, 'US_STALE_LEADER');

  fs.writeFileSync(fencingFile(path.join(root, 'a')), 'garbage\n');
  assert.throws(() => new FencingGate('storage array-a', tokenKeptIn(fencingFile(path.join(root, 'a')))), /holds no fencing token/);
});

test('where controllers elect a leader, a controller without a term sends no command (reads still go); with a term, the token goes with each call', async (t) => {
  const seen: { method: string; token: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, token: req.headers[FENCING_HEADER] as string | undefined });
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/x`;
  const config = makeConfig([]);
  let token: number | null = null;
  const clients = new PartClients(config, () => token, true);
  await assert.rejects(clients.call(url, { body: { epoch: 2 } }), (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER');
  await assert.rejects(clients.call(url, { method: 'DELETE' }), (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER');
  await clients.call(url);
  assert.deepEqual(seen, [{ method: 'GET', token: undefined }], 'only the read reached the part');
  token = 7;
  await clients.call(url, { body: {} });
  assert.deepEqual(seen[1], { method: 'POST', token: '7' });
  // The embedded default (no leader lease): commands go without a token, as before.
  await new PartClients(config).call(url, { body: {} });
  assert.deepEqual(seen[2], { method: 'POST', token: undefined });
});

test('a relay action without a term is refused before any driver acts (a BMC cannot check a token)', async (t) => {
  const { HostRelays } = await import('../../../src/power/host-relays.ts');
  const { StateStore } = await import('../../../src/state/state-store.ts');
  const store = new StateStore({ mirrored: true });
  let term = false;
  const logs = tempDir();
  t.after(() => fs.rmSync(logs, { recursive: true, force: true }));
  const relays = new HostRelays(makeConfig([]), store, logs, () => term);
  await assert.rejects(relays.off('h1'), (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER');
  await assert.rejects(relays.on('h1'), (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER');
  term = true;
  const withTerm = await relays.off('h1').then(
    () => null,
    (e: Error & { code?: string }) => e,
  );
  assert.notEqual(withTerm?.code, 'US_STALE_LEADER', 'with a term the driver is asked');
  store.close();
});

test('the gate reports what it did: nothing before any token; then the highest seen and each refusal', async () => {
  const gate = new FencingGate('the director');
  assert.equal(gate.view(), null, 'the embedded default: nothing to report');
  const req = (method: string, token: string) => ({ method, url: '/v1/routes/shop', headers: { [FENCING_HEADER]: token } }) as unknown as http.IncomingMessage;
  await gate.admit(req('PUT', '12'));
  assert.deepEqual(gate.view(), { highest: 12, refused: 0, lastRefused: null });
  await assert.rejects(gate.admit(req('PUT', '2')));
  const v = gate.view()!;
  assert.equal(v.refused, 1);
  assert.deepEqual({ ...v.lastRefused!, at: 0 }, { token: 2, highest: 12, method: 'PUT', url: '/v1/routes/shop', at: 0 });
});
