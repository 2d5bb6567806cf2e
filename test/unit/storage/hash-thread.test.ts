import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { OFF_LOOP_BYTES, blockDigests, digestHex, hashThreadJobs } from '../../../src/storage/hash-thread.ts';

/** What the digests must be: each block's, cut to `keep` bytes, computed here the plain way. */
function expected(data: Buffer, blockSize: number, algorithm: 'sha1' | 'sha256', keep: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += blockSize)
    parts.push(
      createHash(algorithm)
        .update(data.subarray(at, at + blockSize))
        .digest()
        .subarray(0, keep),
    );
  return Buffer.concat(parts);
}

test('large data is hashed on the hashing thread, with the same result as on the event loop; small data at once', async () => {
  const big = randomBytes(OFF_LOOP_BYTES * 3 + 1234); // a short last block
  const before = hashThreadJobs();
  assert.ok((await blockDigests(big, 4096, 'sha1', 20)).equals(expected(big, 4096, 'sha1', 20)));
  assert.ok((await blockDigests(big, 4096, 'sha256', 16)).equals(expected(big, 4096, 'sha256', 16)));
  assert.equal(await digestHex(big, 'sha256'), createHash('sha256').update(big).digest('hex'));
  assert.equal(hashThreadJobs() - before, 3, 'the three large jobs ran on the thread');

  const small = randomBytes(10_000);
  assert.ok((await blockDigests(small, 4096, 'sha256', 16)).equals(expected(small, 4096, 'sha256', 16)));
  assert.equal(await digestHex(small, 'sha256'), createHash('sha256').update(small).digest('hex'));
  assert.equal(hashThreadJobs() - before, 3, 'small data is not sent to the thread');
});

test('the event loop keeps turning while a large image is hashed', async () => {
  const image = randomBytes(64 << 20);
  const t0 = performance.now();
  createHash('sha1').update(image).digest();
  const onLoopMs = performance.now() - t0;
  // Timer turns counted during the off-loop hashing of the same bytes, page by page.
  let turns = 0;
  const timer = setInterval(() => turns++, 5);
  try {
    await blockDigests(image, 4096, 'sha1', 20);
  } finally {
    clearInterval(timer);
  }
  assert.ok(turns >= 3, `the loop turned ${turns} times during the hashing (hashing it on the loop takes ${onLoopMs.toFixed(0)} ms)`);
});
