import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { Cluster } from './cluster.ts';

/**
 * A real storage fault with no switch in the shop: `chattr +i` (immutable) on the
 * primary copy's orders.db and its WAL (array-a) makes every write of the running shop
 * fail with SQLITE_IOERR_WRITE, while reads (the catalog, GET /api/orders, the health
 * probe's `SELECT 1`) go on. chmod would not do: the shop holds the files open for
 * writing already. Needs root (CAP_LINUX_IMMUTABLE) and a file system with the flag
 * (ext4, xfs, tmpfs …).
 */

/** The primary copy's orders.db made immutable by `apply()`, writable again by `release()` and at the test's end at the latest. */
export function immutableOrdersDb(t: Pick<TestContext, 'after'>, cluster: Cluster): { apply: () => void; release: () => void } {
  const vol = path.join(cluster.dir, 'array-a', 'volumes', 'shop');
  const files = [path.join(vol, 'orders.db'), path.join(vol, 'orders.db-wal')];
  let applied = false;
  const set = (on: boolean): void => {
    execFileSync('chattr', [on ? '+i' : '-i', ...files.filter((f) => fs.existsSync(f))]);
    applied = on;
  };
  t.after(() => {
    if (applied) set(false);
  });
  return { apply: () => set(true), release: () => set(false) };
}
