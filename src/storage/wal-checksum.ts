/**
 * SQLite's WAL checksum (https://www.sqlite.org/fileformat2.html, "Checksum Algorithm").
 *
 * The input is read as 32-bit words in the byte order named by the WAL header's magic
 * (0x377f0683: big-endian, 0x377f0682: little-endian), two at a time:
 *   s0 += x[i] + s1;  s1 += x[i+1] + s0;   (all arithmetic mod 2^32)
 * The checksum is cumulative: the WAL header's checksum covers its first 24 bytes
 * starting from (0, 0); every frame's checksum continues from the previous frame's
 * (the header's for frame 1) over the frame header's first 8 bytes, then the page.
 */
export type WalChecksum = readonly [number, number];

export const ZERO_CHECKSUM: WalChecksum = [0, 0];

/**
 * Continues the checksum `prev` over `buf[start, end)`. The length must be a
 * multiple of 8 (it always is: 24-byte header prefix, 8-byte frame prefix, pages).
 */
export function walChecksum(buf: Uint8Array, bigEndian: boolean, prev: WalChecksum = ZERO_CHECKSUM, start = 0, end = buf.length): WalChecksum {
  if ((end - start) % 8 !== 0) throw new RangeError(`walChecksum: length ${end - start} is not a multiple of 8`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const little = !bigEndian;
  let s0 = prev[0] >>> 0;
  let s1 = prev[1] >>> 0;
  for (let i = start; i < end; i += 8) {
    s0 = (s0 + view.getUint32(i, little) + s1) >>> 0;
    s1 = (s1 + view.getUint32(i + 4, little) + s0) >>> 0;
  }
  return [s0, s1];
}

export function sameChecksum(a: WalChecksum, b: WalChecksum): boolean {
  return a[0] === b[0] && a[1] === b[1];
}
