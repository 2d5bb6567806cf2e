/**
 * Large buffers handed to worker threads (hashing, quick_check of an image) through
 * shared memory: posting a view of a SharedArrayBuffer copies nothing, where a structured
 * clone copies the data once per message (about 25 ms for 50 MB). The copy into shared
 * memory is made once per source buffer and kept while that buffer lives, so the several
 * jobs on one image (its sha256, its pages' sha1, its quick_check) share it. Threads must
 * not write into it (one that must, copies first).
 */
const shared = new WeakMap<ArrayBufferLike, SharedArrayBuffer>();

export function sharedView(data: Uint8Array): Uint8Array {
  if (data.buffer instanceof SharedArrayBuffer) return data;
  // Only a view of a whole buffer is remembered (a part of one is another piece of data).
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  let sab = whole ? shared.get(data.buffer) : undefined;
  if (sab === undefined) {
    sab = new SharedArrayBuffer(data.byteLength);
    new Uint8Array(sab).set(data);
    if (whole) shared.set(data.buffer, sab);
  }
  return new Uint8Array(sab);
}
