import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { sharedView } from './shared-bytes.ts';
import { JobThread } from './job-thread.ts';

/**
 * Hashing of whole database images, off the storage processor's event loop.
 *
 * A new generation hashes its image three ways (the sha256 the replica checks, the
 * sha1 of every page for the page record, the block hashes of a differential copy),
 * and a replica does the same on its side: for a 50 MB database, stretches of 100 ms
 * and more of hashing in a CPU profile of bench/copy-under-load, during which the event
 * loop would hold up shipping, sync barriers and status answers. Data of at least `OFF_LOOP_BYTES` is hashed on one
 * worker thread per process instead (started on first use; it does not keep the
 * process alive). The data goes through shared memory (shared-bytes.ts: one memcpy, a
 * small part of the cost of hashing it, whatever the number of jobs on it); a file is
 * read by the thread itself. Smaller data is hashed at once:
 * the thread's round trip would cost more. Should the thread fail, the hashing is done
 * on the event loop: the result is the same either way (the same function runs in both).
 */
export const OFF_LOOP_BYTES = 1 << 20;

export type HashAlgorithm = 'sha1' | 'sha256';

/**
 * The digest of every `blockSize` block of `data` (the last may be shorter), each cut to
 * `keep` bytes, concatenated. Also the body of the thread's work: it is sent to the
 * thread as source, so it uses nothing but its arguments.
 */
function digestBlocks(hash: typeof createHash, data: Uint8Array, blockSize: number, algorithm: HashAlgorithm, keep: number): Buffer {
  const n = Math.ceil(data.length / blockSize);
  const out = Buffer.alloc(n * keep);
  for (let i = 0; i < n; i++) {
    const d = hash(algorithm)
      .update(data.subarray(i * blockSize, Math.min(data.length, (i + 1) * blockSize)))
      .digest();
    d.copy(out, i * keep, 0, keep);
  }
  return out;
}

/** Most bytes of a file read at once while hashing its blocks (bounded memory for large files). */
const READ_BYTES = 4 << 20;

/** `digestBlocks` of a file, read in bounded pieces; also its size. Sent to the thread as source too. */
function digestFileBlocks(
  hash: typeof createHash,
  files: typeof fs,
  file: string,
  blockSize: number,
  algorithm: HashAlgorithm,
  keep: number,
): { size: number; hashes: Buffer } {
  const fd = files.openSync(file, 'r');
  try {
    const size = files.fstatSync(fd).size;
    const n = Math.ceil(size / blockSize);
    const out = Buffer.alloc(n * keep);
    const per = Math.max(1, Math.floor(READ_BYTES / blockSize));
    const buf = Buffer.alloc(per * blockSize);
    for (let first = 0; first < n; first += per) {
      const want = Math.min(buf.length, size - first * blockSize);
      let got = 0;
      while (got < want) {
        const r = files.readSync(fd, buf, got, want - got, first * blockSize + got);
        if (r === 0) break;
        got += r;
      }
      const blocks = Math.ceil(got / blockSize);
      for (let j = 0; j < blocks; j++) {
        const d = hash(algorithm)
          .update(buf.subarray(j * blockSize, Math.min(got, (j + 1) * blockSize)))
          .digest();
        d.copy(out, (first + j) * keep, 0, keep);
      }
      if (got < want) return { size: first * blockSize + got, hashes: out.subarray(0, (first + blocks) * keep) };
    }
    return { size, hashes: out };
  } finally {
    files.closeSync(fd);
  }
}

type Job =
  | { op: 'blocks'; data: Uint8Array; blockSize: number; algorithm: HashAlgorithm; keep: number }
  | { op: 'file'; file: string; blockSize: number; algorithm: HashAlgorithm; keep: number }
  | { op: 'whole'; data: Uint8Array; algorithm: HashAlgorithm };

/**
 * Runs a job on the event loop (small data, or the thread is gone). The thread's message
 * handler below does the same three cases with the same two functions.
 */
function runJob(j: Job): { hashes?: Buffer; size?: number; hex?: string } {
  if (j.op === 'blocks') return { hashes: digestBlocks(createHash, j.data, j.blockSize, j.algorithm, j.keep) };
  if (j.op === 'file') return digestFileBlocks(createHash, fs, j.file, j.blockSize, j.algorithm, j.keep);
  return { hex: createHash(j.algorithm).update(j.data).digest('hex') };
}

// esbuild (tsx) may wrap functions with a `__name` helper: the thread defines it as a no-op.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const __name = (f) => f;
const digestBlocks = ${digestBlocks.toString()};
const READ_BYTES = ${READ_BYTES};
const digestFileBlocks = ${digestFileBlocks.toString()};
parentPort.on('message', ({ id, job }) => {
  try {
    let r;
    if (job.op === 'blocks') r = { hashes: digestBlocks(createHash, job.data, job.blockSize, job.algorithm, job.keep) };
    else if (job.op === 'file') r = digestFileBlocks(createHash, fs, job.file, job.blockSize, job.algorithm, job.keep);
    else r = { hex: createHash(job.algorithm).update(job.data).digest('hex') };
    parentPort.postMessage({ id, ok: true, r });
  } catch (e) {
    parentPort.postMessage({ id, ok: false, error: e && e.message, code: e && e.code });
  }
});
`;

interface Pending {
  id: number;
  job: Job;
  resolve: (r: ReturnType<typeof runJob>) => void;
  reject: (e: Error) => void;
}

interface Answer {
  id: number;
  ok: boolean;
  r?: { hashes?: Uint8Array; size?: number; hex?: string };
  error?: string;
  code?: string;
}

class HashThread extends JobThread<Pending, Answer> {
  /** Jobs the thread ran (for tests and the bench: proof that the work left the event loop). */
  ran = 0;

  constructor() {
    super('the hashing thread');
  }

  run(job: Job): Promise<ReturnType<typeof runJob>> {
    if (job.op !== 'file') job = { ...job, data: sharedView(job.data) };
    const id = this.nextId();
    return new Promise((resolve, reject) => {
      try {
        this.post({ id, job, resolve, reject }, { id, job });
      } catch {
        // No thread: the same function, here.
        Promise.resolve()
          .then(() => runJob(job))
          .then(resolve, reject);
      }
    });
  }

  protected start(): Worker {
    return new Worker(WORKER, { eval: true });
  }

  protected answered(p: Pending, m: Answer): void {
    this.ran++;
    if (m.ok) {
      const { hashes, ...rest } = m.r!;
      p.resolve(hashes ? { ...rest, hashes: Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength) } : rest);
    } else p.reject(Object.assign(new Error(m.error ?? 'hashing failed'), m.code ? { code: m.code } : {}));
  }

  /** The thread is gone: what it had is done here, on the event loop (same function, same result). */
  protected gone(left: Pending[]): void {
    for (const p of left) {
      try {
        p.resolve(runJob(p.job));
      } catch (e) {
        p.reject(e as Error);
      }
    }
  }
}

const thread = new HashThread();

/** How many jobs the hashing thread has run in this process. */
export function hashThreadJobs(): number {
  return thread.ran;
}

/** `digestBlocks` of `data`: on the hashing thread when it is large. */
export async function blockDigests(data: Uint8Array, blockSize: number, algorithm: HashAlgorithm, keep: number): Promise<Buffer> {
  const job: Job = { op: 'blocks', data, blockSize, algorithm, keep };
  return (data.length >= OFF_LOOP_BYTES ? await thread.run(job) : runJob(job)).hashes!;
}

/** The block digests of a file and its size, read and hashed on the hashing thread. */
export async function fileBlockDigests(file: string, blockSize: number, algorithm: HashAlgorithm, keep: number): Promise<{ size: number; hashes: Buffer }> {
  const r = await thread.run({ op: 'file', file, blockSize, algorithm, keep });
  return { size: r.size!, hashes: r.hashes! };
}

/** The hex digest of the whole of `data`: on the hashing thread when it is large. */
export async function digestHex(data: Uint8Array, algorithm: HashAlgorithm): Promise<string> {
  const job: Job = { op: 'whole', data, algorithm };
  return (data.length >= OFF_LOOP_BYTES ? await thread.run(job) : runJob(job)).hex!;
}
