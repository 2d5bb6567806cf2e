import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { FileShipper } from '../../../src/storage/file-sync.ts';
import type { FilesRequest, ReplicaClient } from '../../../src/storage/replica-protocol.ts';

/**
 * A caller of `nextScan()` (a reader's catch-up, a failover's drain) that arrives while a
 * scan is running is served by the scan right after it, not one period later. The period
 * here is 60 s: only that can make the wait end within the test's timeout.
 */
test('nextScan called during a scan is served by the next scan at once, not after the scan period', { timeout: 10_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-file-scan-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'first.txt'), 'one');

  const sent: string[] = [];
  let release!: () => void;
  const firstSendHeld = new Promise<void>((r) => (release = r));
  let inFirstSend!: () => void;
  const firstSendBegun = new Promise<void>((r) => (inFirstSend = r));
  const client = {
    async files(f: Omit<FilesRequest, 'epoch'>): Promise<unknown> {
      if (sent.length === 0) {
        inFirstSend();
        await firstSendHeld;
      }
      sent.push(...f.put.map((p) => p.path));
      return { ok: true };
    },
  } as unknown as ReplicaClient;
  const shipper = new FileShipper({ volumeDir: dir, client, logger: pino({ level: 'silent' }), scanMs: 60_000 });
  shipper.start([]);
  t.after(() => shipper.stop());

  await firstSendBegun;
  // Written and asked for while the first scan is still sending: that scan began before both.
  fs.writeFileSync(path.join(dir, 'second.txt'), 'two');
  await new Promise((r) => setTimeout(r, 200)); // its watch event arrives during the scan too
  const t0 = Date.now();
  const waited = shipper.nextScan();
  release();
  await waited;
  assert.deepEqual(sent.sort(), ['first.txt', 'second.txt'], 'the scan that served the waiter shipped the file written before the call');
  assert.ok(Date.now() - t0 < 5000, `served by the scan after the running one (${Date.now() - t0} ms), not after the 60 s period`);
});

/**
 * The lag of plain files counts a change from the moment the directory watch reports it,
 * not from the scan that finds it: a file written just before a crash is part of what the
 * failover reports as possibly lost, before any scan saw it. The scan runs 20 ms after the
 * event (its settle delay), so the lag when the file is sent covers at least those 20 ms;
 * counted from the scan, it would be the scan's own few milliseconds.
 */
test('a file written counts in the lag from its watch event, until a scan has shipped it', { timeout: 10_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-file-lag-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const onReplica = new Set<string>();
  let lagAtSend = -1;
  const client = {
    async files(f: Omit<FilesRequest, 'epoch'>): Promise<unknown> {
      if (f.put.some((p) => p.path === 'upload.blob')) lagAtSend = shipper.lagMs();
      for (const p of f.put) onReplica.add(p.path);
      return { ok: true };
    },
  } as unknown as ReplicaClient;
  const shipper = new FileShipper({ volumeDir: dir, client, logger: pino({ level: 'silent' }), scanMs: 60_000 });
  shipper.start([]);
  t.after(() => shipper.stop());
  await new Promise((r) => setTimeout(r, 200)); // the first scan (of nothing) is done
  assert.equal(shipper.lagMs(), 0);

  const writtenAt = Date.now();
  fs.writeFileSync(path.join(dir, 'upload.blob'), 'x'.repeat(1000));
  const deadline = Date.now() + 5000;
  while (!onReplica.has('upload.blob') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.ok(onReplica.has('upload.blob'), 'the file was shipped');
  assert.ok(lagAtSend >= 18, `the lag when it was sent (${lagAtSend} ms) counts from the watch event, before the scan's 20 ms settle delay`);
  assert.ok(lagAtSend <= Date.now() - writtenAt, 'and not from before the write');
  assert.equal(shipper.lagMs(), 0, 'and 0 once shipped');
});
