import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MINIMAL, cleanup, lines, load } from './helpers.ts';

after(cleanup);

/** MINIMAL with `from` replaced by `to` (asserting that `from` is there). */
function edit(from: string, to: string, text = MINIMAL): string {
  assert.ok(text.includes(from), `fixture contains ${from}`);
  return text.replace(from, to);
}

test('references: a host on an unknown storage system', () => {
  assert.deepEqual(lines(edit('storage: array-b }\n  h3', 'storage: array-c }\n  h3')), [
    '7:38: hosts.h2.storage: unknown storage system array-c (known: array-a, array-b, vault)',
  ]);
});

test('references: unknown host or pool as primary and standby', () => {
  assert.deepEqual(lines(edit('primary: h1\n    standby: [h2]', 'primary: h9\n    standby: [h2, nope]')), [
    '13:14: sites.shop.primary: unknown host h9 (known: h1, h2, h3)',
    '14:19: sites.shop.standby[1]: unknown pool or host nope (known: h1, h2, h3)',
  ]);
  assert.deepEqual(lines(edit('standby: [h2]', 'standby: spares')), ['14:14: sites.shop.standby: unknown pool or host spares (known: h1, h2, h3)']);
  assert.deepEqual(lines(`${edit('primary: h1', 'primary: spares')}pools:\n  spares: [h3]\n`), [
    '13:14: sites.shop.primary: unknown host spares (that is a pool; primary must name one host)',
  ]);
});

test('references: a pool naming an unknown host, twice the same host, or the name of a host', () => {
  assert.deepEqual(lines(`${MINIMAL}pools:\n  spares: [h2, h7, h2]\n  h3: [h2]\n`), [
    '16:16: pools.spares[1]: unknown host h7 (known: h1, h2, h3)',
    '16:20: pools.spares[2]: h2 is listed twice',
    '17:3: pools.h3: a pool may not have the name of a host (standby: h3 would be ambiguous)',
  ]);
});

test('references: two hosts with one address', () => {
  assert.deepEqual(lines(edit('h3: { address: 127.0.3.1', 'h3: { address: 127.0.2.1')), [
    '8:3: hosts.h3.agentPort: 127.0.2.1:7001 is already used by the agent of host h2',
    '8:18: hosts.h3.address: 127.0.2.1 is already the address of host h2; every host needs its own',
  ]);
});

const TWO_SITES = `${MINIMAL}  outlet:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3001 }
    primary: h2
    standby: [h1]
`;

test('references: two sites with one front', () => {
  assert.deepEqual(lines(TWO_SITES), ['16:12: sites.outlet.front: 127.0.0.1:8080 is already used by sites.shop.front']);
});

test('references: a front equal to the controller, director or a storage listen', () => {
  assert.deepEqual(lines(`controller: { listen: 127.0.0.1:8080 }\n${MINIMAL}`), [
    '12:12: sites.shop.front: 127.0.0.1:8080 is already used by controller.listen',
  ]);
  assert.deepEqual(lines(`director: { listen: 127.0.0.1:8080 }\n${MINIMAL}`), ['12:12: sites.shop.front: 127.0.0.1:8080 is already used by director.listen']);
  assert.deepEqual(lines(edit('front: 127.0.0.1:8080', 'front: 127.0.0.1:7101')), [
    '11:12: sites.shop.front: 127.0.0.1:7101 is already used by storage.array-b.listen',
  ]);
  assert.deepEqual(lines(edit('{ path: data/vault, backup: true }', '{ path: data/vault, backup: true, listen: 127.0.0.1:7070 }')), [
    '4:52: storage.vault.listen: 127.0.0.1:7070 is already used by controller.listen',
  ]);
});

test('references: a site without a standby, and a primary in its own standby list', () => {
  assert.deepEqual(lines(edit('standby: [h2]', 'standby: []')), [
    '14:14: sites.shop.standby: names no standby host: a site needs at least one other host to fail over to',
  ]);
  assert.deepEqual(lines(edit('standby: [h2]', 'standby: [h2, h1]')), [
    "14:19: sites.shop.standby[1]: h1 is the site's primary; a standby must be another host",
  ]);
  assert.deepEqual(lines(`${edit('standby: [h2]', 'standby: spares')}pools:\n  spares: [h1]\n`), [
    '14:14: sites.shop.standby: names no standby host: a site needs at least one other host to fail over to',
  ]);
});

test("references: standby hosts only on the primary's storage cannot take over", () => {
  const text = edit('h3: { address: 127.0.3.1, storage: array-b }', 'h3: { address: 127.0.3.1, storage: array-a }');
  assert.deepEqual(lines(edit('standby: [h2]', 'standby: [h3]', text)), [
    '14:14: sites.shop.standby: every standby host (h3) is attached to storage array-a, like the primary h1 (or to a backup vault): no replica can be promoted; add a standby attached to another storage system',
  ]);
  // one usable standby is enough
  assert.deepEqual(load(edit('standby: [h2]', 'standby: [h3, h2]', text)).sites.shop?.standby, ['h3', 'h2']);
});

test('references: backup.to must name a backup storage system', () => {
  const withBackup = (to: string): string => edit('standby: [h2]', `standby: [h2]\n    volume: { backup: { to: ${to} } }`);
  assert.deepEqual(lines(withBackup('array-b')), [
    '15:29: sites.shop.volume.backup.to: storage array-b is not a backup storage system (set backup: true on it)',
  ]);
  assert.deepEqual(lines(withBackup('tape')), ['15:29: sites.shop.volume.backup.to: unknown storage system tape (known: array-a, array-b, vault)']);
  assert.equal(load(withBackup('vault')).sites.shop?.volume.backup?.to, 'vault');
});

test('references: two storage systems with one path (or nested paths)', () => {
  assert.deepEqual(lines(edit('{ path: data/array-b }', '{ path: ./data/array-a/ }')), [
    '3:20: storage.array-b.path: same path as storage array-a; every storage system needs its own directory',
  ]);
  assert.deepEqual(lines(edit('{ path: data/array-b }', '{ path: data/array-a/b }')), [
    '3:20: storage.array-b.path: overlaps the path of storage array-a; storage directories must not be nested',
  ]);
});

test('references: a site primary on a backup storage host', () => {
  assert.deepEqual(lines(edit('h1: { address: 127.0.1.1, storage: array-a }', 'h1: { address: 127.0.1.1, storage: vault }')), [
    "13:14: sites.shop.primary: host h1 is attached to vault, a backup storage system; a site's primary needs a volume storage system",
  ]);
});

test('references: two sites that may share a host need their own app ports', () => {
  const text = TWO_SITES.replace(
    'front: 127.0.0.1:8080\n    app: { command: [node, server.js], port: 3001 }',
    'front: 127.0.0.1:8081\n    app: { command: [node, server.js], port: 3000 }',
  );
  assert.deepEqual(lines(text), ['17:46: sites.outlet.app.port: site shop uses port 3000 too, and both may run on h2, h1; give each site its own app port']);
  assert.deepEqual(lines(edit('port: 3000', 'port: 7001')), [
    '12:46: sites.shop.app.port: 7001 is the agent port of host h1, where this site may run',
    '12:46: sites.shop.app.port: 7001 is the agent port of host h2, where this site may run',
  ]);
});

test('references: a broken entry does not hide the problems of the others', () => {
  const text = edit('primary: h1', 'primary: h9\n    health: { probe: { every: 5 } }');
  assert.deepEqual(lines(text), [
    '13:14: sites.shop.primary: unknown host h9 (known: h1, h2, h3)',
    '14:31: sites.shop.health.probe.every: must be a duration like 200ms',
  ]);
});
