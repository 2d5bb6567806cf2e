import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Loopback slots (cluster.ts: a slot is a range of ports, 20000 + slot × 100, and of
 * addresses, 127.x.y.1) handed out to test processes, so that no test names its own:
 * a test file claims what it needs when it loads, and two test processes running at
 * once never share a slot. A claim is a file `<tmp>/understudy-slots/<slot>` holding
 * the claiming process's pid, created exclusively; it is removed when that process
 * exits, and a claim whose process is gone (a killed runner) is taken over.
 */

/** Slots 1–89 are the tests'; benches keep their own fixed slots above the tests' range (bench/). */
const FIRST = 1;
const LAST = 89;
const DIR = path.join(os.tmpdir(), 'understudy-slots');

const mine = new Set<number>();
let hooked = false;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function release(): void {
  for (const slot of mine) fs.rmSync(path.join(DIR, String(slot)), { force: true });
  mine.clear();
}

function tryClaim(slot: number): boolean {
  const file = path.join(DIR, String(slot));
  try {
    fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const owner = Number(fs.readFileSync(file, 'utf8').trim());
  if (owner === process.pid || (Number.isInteger(owner) && owner > 0 && alive(owner))) return false;
  // Left by a process that is gone: taken over, unless another process took it over first.
  fs.rmSync(file, { force: true });
  try {
    fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    return false;
  }
}

/** A free slot, held by this process until it exits. Throws when all are taken. */
export function claimSlot(): number {
  fs.mkdirSync(DIR, { recursive: true });
  if (!hooked) {
    hooked = true;
    process.on('exit', release);
  }
  // Start at a point that differs between processes, so that concurrent claims rarely race.
  const span = LAST - FIRST + 1;
  const start = process.pid % span;
  for (let k = 0; k < span; k++) {
    const slot = FIRST + ((start + k) % span);
    if (mine.has(slot)) continue;
    if (tryClaim(slot)) {
      mine.add(slot);
      return slot;
    }
  }
  throw new Error(`no free test slot in ${FIRST}–${LAST}: every one is claimed in ${DIR} by a running process`);
}

/** `n` free slots (see claimSlot). */
export function claimSlots(n: number): number[] {
  return Array.from({ length: n }, () => claimSlot());
}
