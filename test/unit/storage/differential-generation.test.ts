import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import {
  BLOCK_HASH_BYTES,
  blockHashes,
  decodeWalPart,
  differingBlocks,
  encodeWalPart,
  fileBlockHashes,
  packBlocks,
  sqlitePageSize,
  writeBlocks,
} from '../../../src/storage/block-diff.ts';
import { ReplicaDbWriter } from '../../../src/storage/replica-db-writer.ts';
import { baseVolumeDirs, findBaseDatabase, seedReplicaFiles } from '../../../src/storage/replica-base.ts';
import { DbShipper } from '../../../src/storage/db-shipper.ts';
import type { ReplicaClient } from '../../../src/storage/replica-protocol.ts';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { callJson } from '../../../src/shared/http-client.ts';
import { isUnderstudyError } from '../../../src/shared/errors.ts';
import type { VolumeStatus } from '../../../src/shared/contracts.ts';
import { freePort, makeConfig, tempDir, testLogger, waitFor } from './helpers.ts';

/**
 * Differential generations (failback): the replica offers the block hashes of
 * an older copy, the source sends only differing blocks, the replica rebuilds and
 * verifies the image, and falls back to a full copy on any mismatch.
 */

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const flip = (b: Buffer, at: number, mask = 0xff): void => {
  b.writeUInt8(b.readUInt8(at) ^ mask, at);
};

async function rebuild(base: Buffer, image: Buffer, blockSize: number, dir: string): Promise<Buffer> {
  const f = path.join(dir, `rebuild-${randomBytes(3).toString('hex')}`);
  fs.writeFileSync(f, base);
  const idx = await differingBlocks(image, blockSize, await blockHashes(base, blockSize));
  const fd = fs.openSync(f, 'r+');
  try {
    writeBlocks(fd, blockSize, idx, packBlocks(image, blockSize, idx));
  } finally {
    fs.closeSync(fd);
  }
  fs.truncateSync(f, image.length);
  return fs.readFileSync(f);
}

test('block diff: only changed, added and short blocks are sent, and base + blocks rebuild the image', async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const B = 4096;
  const base = randomBytes(B * 20);
  // Same size, three pages changed.
  const same = Buffer.from(base);
  for (const i of [0, 7, 19]) flip(same, i * B + 100);
  assert.deepEqual(await differingBlocks(same, B, await blockHashes(base, B)), [0, 7, 19]);
  assert.ok((await rebuild(base, same, B, dir)).equals(same));
  // Grown by 5 pages, one changed inside: the new pages are all sent.
  const grown = Buffer.concat([same, randomBytes(B * 5)]);
  assert.deepEqual(await differingBlocks(grown, B, await blockHashes(base, B)), [0, 7, 19, 20, 21, 22, 23, 24]);
  assert.ok((await rebuild(base, grown, B, dir)).equals(grown));
  // Shrunk: nothing to send but the changed pages; the caller cuts the size.
  const shrunk = base.subarray(0, B * 12);
  assert.deepEqual(await differingBlocks(shrunk, B, await blockHashes(base, B)), []);
  assert.ok((await rebuild(base, shrunk, B, dir)).equals(shrunk));
  // A partial last block never matches a full one.
  const odd = Buffer.concat([base.subarray(0, B * 3), base.subarray(B * 3, B * 3 + 100)]);
  assert.deepEqual(await differingBlocks(base.subarray(0, B * 4), B, await blockHashes(odd, B)), [3]);
  assert.ok((await rebuild(odd, base.subarray(0, B * 4), B, dir)).equals(base.subarray(0, B * 4)));
  // An empty base: everything.
  assert.equal((await differingBlocks(base, B, Buffer.alloc(0))).length, 20);
  // Bad packed data is refused.
  const fd = fs.openSync(path.join(dir, 'x'), 'w');
  t.after(() => fs.closeSync(fd));
  assert.throws(() => writeBlocks(fd, B, [1, 2], Buffer.alloc(B)), RangeError);
  assert.throws(() => writeBlocks(fd, B, [-1], Buffer.alloc(B)), RangeError);
  await assert.rejects(blockHashes(base, 100), RangeError);
});

test('the WAL part encoded against the image: small when its pages resemble the image, decoded exactly, refused when wrong', () => {
  const B = 4096;
  const image = randomBytes(B * 8);
  const frames: Buffer[] = [Buffer.alloc(32, 7)];
  for (let i = 0; i < 40; i++) {
    const hdr = Buffer.alloc(24);
    const pgno = 1 + (i % 10); // 1..10: pages 9 and 10 are past the image's end
    hdr.writeUInt32BE(pgno, 0);
    hdr.writeUInt32BE(i, 16);
    const page = pgno <= 8 ? Buffer.from(image.subarray((pgno - 1) * B, pgno * B)) : randomBytes(B);
    page.writeUInt32BE(i, 100); // an older version: a few bytes differ
    frames.push(hdr, page);
  }
  const wal = Buffer.concat(frames);
  const enc = encodeWalPart(wal, image, B);
  assert.ok(enc.length < wal.length / 3, `${enc.length} bytes for a ${wal.length}-byte WAL part`);
  assert.ok(decodeWalPart(enc, image, B, wal.length).equals(wal));
  assert.throws(() => decodeWalPart(enc, image, B, wal.length + 1), RangeError);
  assert.throws(() => decodeWalPart(Buffer.from('garbage'), image, B, wal.length), RangeError);
  const other = Buffer.from(image);
  flip(other, 5);
  assert.ok(!decodeWalPart(enc, other, B, wal.length).equals(wal), 'another image decodes to another WAL (the chain check refuses it)');
});

test('block hashes of a file equal those of its bytes (read in pieces)', async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const data = randomBytes((5 << 20) + 1234); // more than one read piece, a short last block
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, data);
  const r = await fileBlockHashes(f, 4096);
  assert.equal(r.size, data.length);
  assert.equal(r.hashes.length, Math.ceil(data.length / 4096) * BLOCK_HASH_BYTES);
  assert.ok(r.hashes.equals(await blockHashes(data, 4096)));
  const img = Buffer.alloc(100);
  img.writeUInt16BE(1, 16);
  assert.equal(sqlitePageSize(img), 65536);
  img.writeUInt16BE(4096, 16);
  assert.equal(sqlitePageSize(img), 4096);
  img.writeUInt16BE(1000, 16);
  assert.equal(sqlitePageSize(img), null);
});

function makeDb(file: string, rows: number): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, payload BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run(`c${i}`, randomBytes(300));
  })();
  return db;
}

function rowsDigest(file: string): { rows: number; digest: string } {
  const db = new Database(file, { readonly: true });
  try {
    const h = createHash('sha256');
    let rows = 0;
    for (const r of db.prepare('SELECT id, customer, payload FROM orders ORDER BY id').iterate() as Iterable<{
      id: number;
      customer: string;
      payload: Buffer;
    }>) {
      h.update(`${r.id}:${r.customer}:`).update(r.payload);
      rows++;
    }
    return { rows, digest: h.digest('hex') };
  } finally {
    db.close();
  }
}

test('replica writer: a differential image is built aside and verified; a wrong base is refused (needSnapshot) and the replica is untouched', async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const B = 4096;
  const old = randomBytes(B * 30);
  old.set(Buffer.from('SQLite format 3\0', 'latin1'), 0);
  const image = Buffer.from(old);
  for (const i of [2, 3, 29]) flip(image, i * B + 9, 1);
  const grown = Buffer.concat([image, randomBytes(B * 2)]);
  const rep = path.join(dir, 'replica');
  fs.mkdirSync(rep);
  fs.writeFileSync(path.join(rep, 'x.db'), old);
  const w = new ReplicaDbWriter(rep, 'x.db');

  const base = await w.prepareBase(1, path.join(rep, 'x.db'), B);
  assert.equal(base.size, old.length);
  const idx = await differingBlocks(grown, B, base.hashes);
  assert.deepEqual(idx, [2, 3, 29, 30, 31]);
  await w.snapshotBlocks(1, B, idx, packBlocks(grown, B, idx));
  assert.equal(await w.snapshotCommit(1, grown.length, sha(grown), 0, true), 0);
  assert.ok(fs.readFileSync(path.join(rep, 'x.db')).equals(grown));

  // The base changes under us (or the hashes lied): the checksum refuses it, nothing is replaced.
  const b2 = await w.prepareBase(2, path.join(rep, 'x.db'), B);
  const shrunk = grown.subarray(0, B * 10);
  const idx2 = await differingBlocks(shrunk, B, b2.hashes);
  assert.deepEqual(idx2, []);
  const tmp = fs.readdirSync(rep).find((n) => n.includes('-snap-2-db'))!;
  // The byte is inverted, not overwritten: random data holds any given value 1 time in 256.
  const fd = fs.openSync(path.join(rep, tmp), 'r+');
  const one = Buffer.alloc(1);
  fs.readSync(fd, one, 0, 1, 5000);
  one[0] = one[0]! ^ 0xff;
  fs.writeSync(fd, one, 0, 1, 5000);
  fs.closeSync(fd);
  await assert.rejects(
    w.snapshotCommit(2, shrunk.length, sha(shrunk), 0, true),
    (e: unknown) => isUnderstudyError(e) && (e.details as { needSnapshot?: boolean }).needSnapshot === true && /differential/.test(e.message),
  );
  assert.ok(fs.readFileSync(path.join(rep, 'x.db')).equals(grown), 'the replica keeps its last good image');
  // Blocks without a base copy are refused.
  await assert.rejects(w.snapshotBlocks(99, B, [0], Buffer.alloc(B)), (e: unknown) => isUnderstudyError(e) && /without its base/.test(e.message));
});

test('base copies: the replica first, then the stale primary copy, then stale/ newest first; files are seeded into an empty replica only', async (t) => {
  const root = tempDir();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const dirs = baseVolumeDirs(root, 'shop');
  assert.deepEqual(dirs, [path.join(root, 'replicas', 'shop'), path.join(root, 'volumes', 'shop')]);
  for (const n of ['shop-epoch2-1000', 'shop-epoch3-2000-replica', 'shop-2-epoch9-9000', 'shopx-epoch1-1'])
    fs.mkdirSync(path.join(root, 'stale', n), { recursive: true });
  assert.deepEqual(
    baseVolumeDirs(root, 'shop')
      .slice(2)
      .map((d) => path.basename(d)),
    ['shop-epoch3-2000-replica', 'shop-epoch2-1000'],
  );
  assert.equal(findBaseDatabase(baseVolumeDirs(root, 'shop'), 'orders.db'), null);
  const stale = path.join(root, 'stale', 'shop-epoch2-1000');
  makeDb(path.join(stale, 'orders.db'), 3).close();
  fs.writeFileSync(path.join(root, 'stale', 'shop-epoch3-2000-replica', 'orders.db'), 'not sqlite');
  assert.equal(findBaseDatabase(baseVolumeDirs(root, 'shop'), 'orders.db'), path.join(stale, 'orders.db'));
  const vol = path.join(root, 'volumes', 'shop');
  fs.mkdirSync(path.join(vol, 'public'), { recursive: true });
  makeDb(path.join(vol, 'orders.db'), 3).close();
  fs.writeFileSync(path.join(vol, 'public', 'index.html'), 'hello');
  fs.writeFileSync(path.join(vol, 'public', '.understudy-tmp-x'), 'temp');
  assert.equal(findBaseDatabase(baseVolumeDirs(root, 'shop'), 'orders.db'), path.join(vol, 'orders.db'));

  const rep = path.join(root, 'replicas', 'shop');
  fs.mkdirSync(rep, { recursive: true });
  const seeded = await seedReplicaFiles(rep, baseVolumeDirs(root, 'shop'));
  assert.deepEqual(seeded, { from: vol, files: 1 });
  assert.equal(fs.readFileSync(path.join(rep, 'public', 'index.html'), 'utf8'), 'hello');
  assert.ok(!fs.existsSync(path.join(rep, 'orders.db')), 'databases are never seeded as files');
  assert.equal(await seedReplicaFiles(rep, baseVolumeDirs(root, 'shop')), null, 'a replica that holds files is left alone');
});

/** A ReplicaClient that talks to a ReplicaDbWriter in this process (no HTTP). */
function localClient(w: ReplicaDbWriter, baseDirs: string[], opts: { corrupt?: boolean; noBase?: boolean } = {}): ReplicaClient & { bytes: number } {
  const c = {
    bytes: 0,
    hello: () => Promise.resolve({ files: [] }),
    snapshotChunk: async (x: { generation: number; part: 'db' | 'wal'; offset: number }, data: Buffer) => {
      const b = Buffer.from(data);
      c.bytes += b.length;
      await w.snapshotChunk(x.generation, x.part, x.offset, b);
      return { ok: true };
    },
    snapshotBase: async (x: { db: string; generation: number; blockSize: number }) => {
      const from = opts.noBase ? null : findBaseDatabase(baseDirs, x.db);
      if (!from) return { base: null };
      const r = await w.prepareBase(x.generation, from, x.blockSize);
      return { base: { size: r.size, blockSize: x.blockSize, hashes: r.hashes.toString('base64') } };
    },
    snapshotBlocks: async (x: { generation: number; blockSize: number; indexes: number[] }, data: Buffer) => {
      const b = Buffer.from(data); // a copy: the damage below must not reach the sender's buffer
      c.bytes += b.length;
      if (opts.corrupt) flip(b, 0); // damage in transit: the commit must refuse it
      await w.snapshotBlocks(x.generation, x.blockSize, x.indexes, b);
      return { ok: true };
    },
    snapshotCommit: async (x: {
      generation: number;
      dbSize: number;
      dbSha256: string;
      walSize: number;
      diff?: boolean;
      walEncoding?: 'xor-image-deflate';
    }) => ({ lastFrame: await w.snapshotCommit(x.generation, x.dbSize, x.dbSha256, x.walSize, x.diff === true, x.walEncoding) }),
    frames: async (x: { generation: number; newWal?: Buffer; firstIndex: number; frames: Buffer }) => ({
      lastFrame: await w.appendFrames(x.generation, x.newWal, x.firstIndex, x.frames),
    }),
    files: () => Promise.resolve({ ok: true }),
  };
  return c as unknown as ReplicaClient & { bytes: number };
}

for (const variant of ['differential', 'fallback after a bad rebuild', 'full without a base'] as const) {
  test(`db shipper, new generation over an older copy: ${variant}`, async (t) => {
    const root = tempDir();
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    const src = path.join(root, 'src');
    const stale = path.join(root, 'stale');
    const rep = path.join(root, 'replica');
    for (const d of [src, stale, rep]) fs.mkdirSync(d);
    const db = makeDb(path.join(src, 'orders.db'), 2000); // ~ 700 KiB
    t.after(() => db.close());
    db.pragma('wal_checkpoint(TRUNCATE)');
    fs.copyFileSync(path.join(src, 'orders.db'), path.join(stale, 'orders.db')); // the old copy the replica holds
    const ins = db.prepare('INSERT INTO orders (customer, payload) VALUES (?, ?)');
    for (let i = 0; i < 20; i++) ins.run(`late${i}`, randomBytes(300));
    db.prepare("UPDATE orders SET customer = 'changed' WHERE id IN (5, 900, 1700)").run();

    const w = new ReplicaDbWriter(rep, 'orders.db');
    const client = localClient(w, [rep, stale], { corrupt: variant === 'fallback after a bad rebuild', noBase: variant === 'full without a base' });
    const s = new DbShipper({ volumeDir: src, rel: 'orders.db', client, logger: testLogger(), idlePollMs: 5 });
    s.start();
    t.after(() => s.stop());
    await waitFor('generation installed', () => s.lastSeed !== null && s.ackedLsn > 0 && s.ackedLsn >= s.seenLsn);
    const seed = s.lastSeed!;
    const dbBytes = fs.statSync(path.join(src, 'orders.db')).size;
    t.diagnostic(JSON.stringify(seed));
    assert.ok(seed.dbBytes >= dbBytes - 100 * 4096);
    if (variant === 'differential') {
      assert.equal(seed.kind, 'differential');
      assert.equal(seed.fallback, undefined);
      assert.ok(seed.blocksSent > 0 && seed.blocksSent < seed.blocks / 4, `${seed.blocksSent} of ${seed.blocks} pages sent`);
      assert.ok(seed.bytesSent < seed.dbBytes / 4, `${seed.bytesSent} bytes sent for a ${seed.dbBytes}-byte database`);
      assert.ok(seed.bytesSent < seed.walBytes, 'the WAL part went encoded against the image');
    } else if (variant === 'fallback after a bad rebuild') {
      assert.equal(seed.kind, 'full');
      assert.match(seed.fallback ?? '', /checksum mismatch/);
      assert.ok(seed.bytesSent >= seed.dbBytes);
    } else {
      assert.equal(seed.kind, 'full');
      assert.equal(seed.bytesSent, seed.dbBytes + seed.walBytes);
    }
    assert.equal(client.bytes, seed.bytesSent);
    // Later commits stream on top, and the replica equals the source.
    for (let i = 0; i < 10; i++) ins.run(`after${i}`, randomBytes(200));
    await waitFor('caught up', async () => {
      await s.position();
      return s.ackedLsn >= s.seenLsn && s.lagMs() === 0;
    });
    await s.stop();
    assert.deepEqual(rowsDigest(path.join(rep, 'orders.db')), rowsDigest(path.join(src, 'orders.db')));
  });
}

test('failback through the storage processors: the old primary storage gets only the differing pages and files', async (t) => {
  const root = tempDir();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const [pa, pb] = [await freePort(), await freePort()];
  const config = makeConfig([
    { name: 'array-a', path: path.join(root, 'a'), port: pa },
    { name: 'array-b', path: path.join(root, 'b'), port: pb },
  ]);
  const tuning = { walPollMs: 5, checkpointFrames: 150, fileScanMs: 100 };
  const a = new StorageProcessor(config, 'array-a', testLogger(), { tuning });
  const b = new StorageProcessor(config, 'array-b', testLogger(), { tuning });
  t.after(async () => {
    await a.stop().catch(() => undefined);
    await b.stop().catch(() => undefined);
  });
  await a.start();
  await b.start();
  const urlA = `http://127.0.0.1:${pa}`;
  const urlB = `http://127.0.0.1:${pb}`;
  const seed = path.join(root, 'seed');
  fs.mkdirSync(path.join(seed, 'public'), { recursive: true });
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(seed, 'public', `p${i}.html`), randomBytes(20_000).toString('hex'));
  await callJson(`${urlA}/v1/volumes/shop/init`, { body: { epoch: 1, seed } });
  const volA = path.join(root, 'a', 'volumes', 'shop');
  const dbA = makeDb(path.join(volA, 'orders.db'), 3000);
  await callJson(`${urlA}/v1/volumes/shop/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: urlB } } });
  const synced = async (url: string): Promise<VolumeStatus> => {
    let st!: VolumeStatus;
    await waitFor(
      'streaming, lag 0',
      async () => {
        st = await callJson<VolumeStatus>(`${url}/v1/volumes/shop`);
        return st.replication?.state === 'streaming' && st.replication.lagMs === 0 && (st.replication.seeds?.length ?? 0) > 0;
      },
      10_000,
    );
    return st;
  };
  const first = await synced(urlA);
  assert.equal(first.replication!.seeds![0]!.kind, 'full', 'the first protection copies everything');
  await callJson(`${urlA}/v1/volumes/shop/confirm`, { body: { timeoutMs: 5000 } });
  await waitFor('files replicated', () => fs.existsSync(path.join(root, 'b', 'replicas', 'shop', 'public', 'p19.html')));
  // Crash of the primary host (its copy on array-a stays as it was), failover to array-b.
  dbA.close();
  await callJson(`${urlB}/v1/volumes/shop/promote`, { body: { epoch: 2 } });
  await callJson(`${urlA}/v1/volumes/shop/demote`, { body: { epoch: 2 } }).catch(() => undefined);
  const volB = path.join(root, 'b', 'volumes', 'shop');
  const dbB = makeDb(path.join(volB, 'orders.db'), 50);
  t.after(() => dbB.close());
  dbB.prepare("UPDATE orders SET customer = 'x' WHERE id IN (1, 1500)").run();
  fs.writeFileSync(path.join(volB, 'public', 'p3.html'), 'changed after the failover');
  // Re-protection back to array-a: its stale copy is the base.
  await callJson(`${urlB}/v1/volumes/shop/replicate`, { body: { epoch: 2, to: { name: 'array-a', url: urlA } } });
  const back = await synced(urlB);
  const s = back.replication!.seeds!.find((x) => x.db === 'orders.db')!;
  t.diagnostic(JSON.stringify(back.replication));
  assert.equal(s.kind, 'differential');
  assert.ok(s.bytesSent < s.dbBytes / 4, `${s.bytesSent} bytes sent for a ${s.dbBytes}-byte database`);
  assert.ok(back.replication!.fileBytesSent! < 30_000, `only the changed file was sent (${back.replication!.fileBytesSent} bytes)`);
  await callJson(`${urlB}/v1/volumes/shop/confirm`, { body: { timeoutMs: 5000 } });
  await waitFor(
    'file replicated',
    () =>
      fs.existsSync(path.join(root, 'a', 'replicas', 'shop', 'public', 'p3.html')) &&
      fs.readFileSync(path.join(root, 'a', 'replicas', 'shop', 'public', 'p3.html'), 'utf8') === 'changed after the failover',
  );
  const repA = path.join(root, 'a', 'replicas', 'shop');
  const copy = path.join(root, 'copy');
  fs.mkdirSync(copy);
  await a.withVolumeQuiesced('shop', async (dir) => {
    assert.equal(dir, repA);
    for (const f of ['orders.db', 'orders.db-wal']) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(copy, f));
  });
  assert.deepEqual(rowsDigest(path.join(copy, 'orders.db')), rowsDigest(path.join(volB, 'orders.db')));
  assert.equal(rowsDigest(path.join(copy, 'orders.db')).rows, 3050);
  assert.deepEqual(fs.readdirSync(path.join(repA, 'public')).sort(), fs.readdirSync(path.join(volB, 'public')).sort());
});
