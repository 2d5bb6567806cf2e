import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { UnderstudyError } from '../shared/errors.ts';
import { parseBody, type JsonRouter } from '../shared/http-json.ts';

/**
 * Fault injection for end-to-end tests, OFF unless the storage processor runs with
 * UNDERSTUDY_TEST_HOOKS=1 (never set by `understudy up` itself; a test passes it in
 * the environment). Off, no route exists and nothing is ever refused.
 *
 * POST /v1/test/volumes/:site/damage { db } — damages a copy of a database in a way
 * nothing heals (bytes overwritten in a replica's db file were shadowed by its
 * WAL frames, or healed at a fold, or by a new generation). Under the volume lock:
 *   1. the copy's WAL is folded into the db file (checkpoint TRUNCATE): no frame is left
 *      to shadow a damaged page;
 *   2. every page but the first gets its first 16 bytes (the b-tree page header)
 *      overwritten, and the file is fsynced;
 *   3. the copy is frozen: every later replication write to it is refused, so neither
 *      appended frames nor a new snapshot can repair it, and the idle heartbeat is told
 *      it still holds what was shipped (`frozenHeld`), so nothing starts a re-seed.
 * quick_check (and SQLite itself) then fails on the copy until it is replaced.
 */
const damageSchema = z
  .object({
    db: z
      .string()
      .regex(/^[A-Za-z0-9._-]+\.db$/)
      .default('orders.db'),
  })
  .prefault({});

export interface TestHookHost {
  withVolumeQuiesced<T>(site: string, fn: (dir: string) => Promise<T>): Promise<T>;
  /** Inside withVolumeQuiesced: the replica's writers forget what they held (the hook folded the WAL behind them). */
  forgetHeld(site: string): void;
}

export class TestHooks {
  readonly enabled = process.env.UNDERSTUDY_TEST_HOOKS === '1';
  private readonly frozen = new Set<string>();

  constructor(
    private readonly host: TestHookHost,
    private readonly storageName: string,
  ) {}

  /** Called by every replication write: refuses one to a copy a test froze. */
  refuseReplication(site: string): void {
    if (this.frozen.has(site)) {
      throw new UnderstudyError(
        'US_REPLICATION',
        `test hook: the copy of ${site} on storage ${this.storageName} was damaged and frozen (UNDERSTUDY_TEST_HOOKS=1); it takes no replication`,
      );
    }
  }

  /**
   * The idle heartbeat (`held`) of a frozen copy is answered as if it still held what
   * was shipped: the damage must stay unseen until a promotion verifies the copy (a
   * heartbeat that re-seeded it would test the re-seed instead, at a time no test controls).
   */
  frozenHeld(site: string, lastFrame: number): number | undefined {
    return this.frozen.has(site) ? lastFrame : undefined;
  }

  register(r: JsonRouter): void {
    if (!this.enabled) return;
    r.on('POST', '/v1/test/volumes/:site/damage', (q) => {
      const site = q.params.site!;
      const { db } = parseBody(damageSchema, q.body);
      return this.host.withVolumeQuiesced(site, async (dir) => {
        const file = path.join(dir, db);
        if (!fs.existsSync(file)) throw new UnderstudyError('US_NOT_FOUND', `${file}: no such database to damage`);
        const conn = new Database(file);
        try {
          conn.pragma('wal_checkpoint(TRUNCATE)');
        } finally {
          conn.close();
        }
        this.host.forgetHeld(site);
        const fd = fs.openSync(file, 'r+');
        let pages = 0;
        try {
          const size = fs.fstatSync(fd).size;
          const pageSize = size >= 18 ? readPageSize(fd) : 4096;
          for (let off = pageSize; off + 16 <= size; off += pageSize, pages++) fs.writeSync(fd, Buffer.alloc(16, 0xa5), 0, 16, off);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        this.frozen.add(site);
        return { site, db, file, pagesDamaged: pages, frozen: true };
      });
    });
  }
}

function readPageSize(fd: number): number {
  const b = Buffer.alloc(2);
  fs.readSync(fd, b, 0, 2, 16);
  const v = b.readUInt16BE(0);
  return v === 1 ? 65536 : v || 4096;
}
