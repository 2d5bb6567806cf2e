import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { callJson } from '../../../src/shared/http-client.ts';
import type { VolumeStatus } from '../../../src/shared/contracts.ts';
import { startStoragePair, waitFor } from './helpers.ts';

/**
 * The barrier a switchover and a failover's drain ask for (POST /v1/volumes/:site/confirm)
 * covers plain files too: an app that stores an upload as a file and then records it in
 * its database must not leave a replica with the record and without the file. The file
 * scan is slow on purpose here (every 60 s), so only the barrier can have shipped it.
 */
test('confirm returns once the replica holds the plain files written before the call, not only the databases', async (t) => {
  const tuning = { walPollMs: 5, checkpointFrames: 150, fileScanMs: 60_000, snapshotLockWaitMs: 300 };
  const { urlA, urlB, root } = await startStoragePair(t, 'us-confirm-files-', tuning);
  const seed = path.join(root, 'seed');
  fs.mkdirSync(seed, { recursive: true });
  const seedDb = new Database(path.join(seed, 'account.sqlite'));
  seedDb.pragma('journal_mode = WAL');
  seedDb.exec('CREATE TABLE files (id TEXT PRIMARY KEY)');
  seedDb.close();
  await callJson<VolumeStatus>(`${urlA}/v1/volumes/up/init`, { body: { epoch: 1, seed } });
  await callJson(`${urlA}/v1/volumes/up/replicate`, { body: { epoch: 1, to: { name: 'array-b', url: urlB } } });
  await waitFor('streaming', async () => (await callJson<VolumeStatus>(`${urlA}/v1/volumes/up`)).replication?.state === 'streaming', 10_000);

  const vol = path.join(root, 'a', 'volumes', 'up');
  const replica = path.join(root, 'b', 'replicas', 'up');
  const db = new Database(path.join(vol, 'account.sqlite'));
  t.after(() => db.close());
  for (let i = 0; i < 3; i++) {
    // The upload: its file, then its record (the order an app acknowledges it in).
    fs.mkdirSync(path.join(vol, 'user-files'), { recursive: true });
    fs.writeFileSync(path.join(vol, 'user-files', `budget-${i}.blob`), `blob ${i} `.repeat(1000));
    db.prepare('INSERT INTO files (id) VALUES (?)').run(`budget-${i}`);
    await callJson(`${urlA}/v1/volumes/up/confirm`, { body: { timeoutMs: 5000 } });
    assert.equal(
      fs.readFileSync(path.join(replica, 'user-files', `budget-${i}.blob`), 'utf8'),
      `blob ${i} `.repeat(1000),
      `upload ${i}: the file is on the replica when confirm returns`,
    );
  }
});
