import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { GenerationSeed, ReplicationState } from '../shared/contracts.ts';
import { UnderstudyError, isUnderstudyError } from '../shared/errors.ts';
import { CatchUpBarrier } from './catch-up-barrier.ts';
import { nextGeneration } from './db-shipper.ts';
import { sendImage } from './image-sender.ts';
import type { ReplicaClient } from './replica-protocol.ts';
import { readDatabaseHeader, startsWithMagic, type DatabaseMode } from './sqlite-file.ts';
import { readWalIndexHeader } from './wal-index.ts';

/**
 * Ships one SQLite database to a replica as a series of consistent snapshots: after
 * every change, a whole image of the database, taken inside one read transaction
 * (`serialize()` through SQLite's pager: the state of one commit, never a torn copy of
 * a file being written), sent as a snapshot generation (differential when the replica's
 * copy is a good base: only the pages that differ travel) and installed on the replica
 * atomically (ReplicaDbWriter.snapshotCommit). The replica's copy is at every instant
 * one committed state of the source.
 *
 * For databases that WAL-frame shipping (DbShipper) cannot follow: rollback-journal
 * mode (the app's choice, or a database it created after the volume was prepared), and a
 * database Understudy switched to WAL mode itself until the app has written to it in
 * that mode (volume-shipper.ts: an app that puts it back in rollback mode must be able
 * to — DbShipper's connections, held open, would make that fail with SQLITE_BUSY).
 * No connection is held between snapshots: in rollback-journal mode a reader blocks the
 * app's commits, so each image holds SQLite's shared lock only while it is copied
 * (the app's writers wait on their busy timeout, as they do for any reader).
 *
 * Changes are found by polling a fingerprint of the file: its identity, size and mtime,
 * the header's file change counter (raised by every commit in rollback-journal mode)
 * and, in WAL mode, the WAL index's salts and mxFrame. The lag is the age of the
 * oldest change seen that no acknowledged snapshot holds yet.
 *
 * Sync mode (`catchUp`): a waiter is released by a pass that begins after it arrived
 * (CatchUpBarrier, by pass number): the pass reads the fingerprint after the caller's
 * commit, and either finds it equal to the fingerprint of the last acknowledged image
 * — then no commit happened since that image was taken (every commit raises the change
 * counter or moves the WAL index), so the image holds the caller's commit — or takes a
 * new image, which holds it since it is taken after it. A waiter whose commit the last
 * acknowledged image already holds (same exact fingerprint at its arrival) is released
 * at once. So a write the director releases is on the replica's disk; each write costs
 * one snapshot (shared by the writes waiting for the same pass), which is what makes a
 * large database in rollback mode slow in sync mode (its barrier times out: degraded).
 */
export interface SnapshotShipperOptions {
  volumeDir: string;
  /** Path of the database relative to the volume. */
  rel: string;
  client: ReplicaClient;
  logger: Logger;
  /** Poll interval of the fingerprint. @default 10 */
  idlePollMs?: number;
  /** Bytes per snapshot chunk request. @default 8 MiB */
  chunkBytes?: number;
  /** How long one image may wait for SQLite's shared lock before the attempt fails. @default 10000 */
  lockWaitMs?: number;
  /** Called whenever `ackedLsn` grows. */
  onAck?: () => void;
  /** Called when the database's journal mode changed, or its WAL got its first frames (the volume shipper re-decides how to ship it). */
  onModeChange?: () => void;
}

interface Fingerprint {
  key: string;
  mode: DatabaseMode;
  /** True when equal keys mean equal committed states (see the class comment). */
  exact: boolean;
  /** WAL mode: frames in the live WAL according to its index (null: no readable index). */
  walFrames: number | null;
}

/** Images below this size are sent whole rather than as the pages that differ from the replica's copy. */
const SEND_WHOLE_BELOW = 1 << 20;

/** Over how long `lagPeakMs` looks back. */
export const PEAK_WINDOW_MS = 2000;

function statKey(file: string): string {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.ino}.${st.size}.${st.mtimeNs}`;
  } catch {
    return '-';
  }
}

export class SnapshotShipper {
  readonly rel: string;
  readonly method = 'snapshots' as const;
  private readonly dbPath: string;
  private readonly opts: Required<Omit<SnapshotShipperOptions, 'onAck' | 'onModeChange'>> & Pick<SnapshotShipperOptions, 'onAck' | 'onModeChange'>;
  private readonly log: Logger;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private sleeping: 'idle' | 'backoff' | null = null;
  private readonly barrier = new CatchUpBarrier();

  state: ReplicationState = 'none';
  generation = 0;
  lastSeed: GenerationSeed | null = null;
  lastError: string | undefined;
  /** The journal mode of the last fingerprint. */
  mode: DatabaseMode = 'missing';
  /** Snapshots acknowledged by the replica since start, and what the last one took (image to acknowledgment). */
  snapshots = 0;
  lastSnapshotMs: number | null = null;
  /** Positions: the number of distinct fingerprints seen (`seenLsn`) and of the last one an acknowledged image holds. */
  ackedLsn = 0;
  seenLsn = 0;
  private lastSeenKey: string | null = null;
  private acked: { key: string; exact: boolean } | null = null;
  private lastImageSha: string | null = null;
  private pending: { lsn: number; at: number }[] = [];
  /** The lag of each acknowledged image when it was acknowledged (the last PEAK_WINDOW_MS). */
  private peaks: { at: number; lag: number }[] = [];
  private walFramesSeen = false;
  private readonly startedAt = Date.now();

  constructor(opts: SnapshotShipperOptions) {
    this.opts = { idlePollMs: 10, chunkBytes: 8 << 20, lockWaitMs: 10_000, ...opts };
    this.rel = opts.rel;
    this.dbPath = path.join(opts.volumeDir, opts.rel);
    this.log = opts.logger.child({ db: opts.rel, shipping: 'snapshots' });
  }

  start(): void {
    if (this.loop) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.barrier.failAll(
      new UnderstudyError(
        'US_REPLICATION_STOPPED',
        `replication of ${this.rel} stopped (promotion, new replica or shutdown): it starts again by itself; understudy status shows it`,
      ),
    );
    this.poke();
    await this.loop;
    this.loop = null;
    if (this.state !== 'none') this.state = 'stopped';
  }

  /** Age of the oldest change not yet held by an acknowledged snapshot (0 when caught up). */
  lagMs(now = Date.now()): number {
    const first = this.pending[0];
    if (first) return Math.max(0, now - first.at);
    return this.acked === null ? Math.max(0, now - this.startedAt) : 0;
  }

  /** Looks at the file now; returns the position of the newest state seen. */
  async position(): Promise<number> {
    try {
      this.observe(this.fingerprint());
    } catch {
      /* the loop reports errors */
    }
    return this.seenLsn;
  }

  /**
   * Sync mode: resolves once the replica holds a snapshot taken after every commit made
   * in this database before the call (see the class comment). Rejects when stopped.
   */
  catchUp(): Promise<void> {
    if (this.acked !== null && this.acked.exact) {
      try {
        const fp = this.fingerprint();
        if (fp.exact && fp.key === this.acked.key) return Promise.resolve();
      } catch {
        /* the pass decides */
      }
    }
    const p = this.barrier.wait(null);
    if (this.sleeping === 'idle') this.poke();
    return p;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number, kind: 'idle' | 'backoff'): Promise<void> {
    this.sleeping = kind;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        this.sleeping = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.sleeping = null;
        resolve();
      };
    });
  }

  /**
   * The file's fingerprint (see the class comment). Exact in rollback-journal mode (the
   * change counter moves at every commit) and in WAL mode with a readable WAL index;
   * without one (no connection has the database open, or a torn read) a commit could
   * leave only the mtime changed, which the clock's granularity may hide: inexact.
   */
  private fingerprint(): Fingerprint {
    const file = statKey(this.dbPath);
    if (file === '-') throw new UnderstudyError('US_REPLICATION', `${this.dbPath}: the database file is gone`);
    const h = readDatabaseHeader(this.dbPath);
    if (h.mode !== 'wal') return { key: `${file}|${h.mode}|${h.changeCounter}|${h.pages}`, mode: h.mode, exact: h.mode === 'rollback', walFrames: null };
    const idx = readWalIndexHeader(`${this.dbPath}-shm`);
    const wal = idx === null ? `noindex.${statKey(`${this.dbPath}-shm`)}.${statKey(`${this.dbPath}-wal`)}` : `${idx.salt1}.${idx.salt2}.${idx.mxFrame}`;
    return { key: `${file}|wal|${h.changeCounter}|${h.pages}|${wal}`, mode: 'wal', exact: idx !== null, walFrames: idx?.mxFrame ?? null };
  }

  private observe(fp: Fingerprint): number {
    if (fp.key !== this.lastSeenKey) {
      this.lastSeenKey = fp.key;
      this.seenLsn++;
      const at = this.seenLsn === 1 ? this.startedAt : Date.now();
      this.pending.push({ lsn: this.seenLsn, at });
    }
    const before = this.mode;
    this.mode = fp.mode;
    let notify = before !== 'missing' && before !== fp.mode;
    if (fp.mode !== 'wal') this.walFramesSeen = false;
    else if ((fp.walFrames ?? 0) > 0 && !this.walFramesSeen) {
      this.walFramesSeen = true;
      notify = true;
    }
    if (notify) this.opts.onModeChange?.();
    return this.seenLsn;
  }

  private noteAcked(lsn: number, fp: Fingerprint): void {
    this.acked = { key: fp.key, exact: fp.exact };
    if (lsn > this.ackedLsn) this.ackedLsn = lsn;
    const now = Date.now();
    const oldest = this.pending[0];
    if (oldest && oldest.lsn <= this.ackedLsn) this.peaks.push({ at: now, lag: now - oldest.at });
    while (this.pending.length > 0 && this.pending[0]!.lsn <= this.ackedLsn) this.pending.shift();
    while (this.peaks.length > 0 && this.peaks[0]!.at < now - PEAK_WINDOW_MS) this.peaks.shift();
    this.opts.onAck?.();
  }

  /**
   * The worst lag of the last `PEAK_WINDOW_MS`: the lag comes and goes with each image
   * (0 right after one is acknowledged, the image's time just before), so one sample of
   * `lagMs` understates what a crash at a random instant loses; this does not.
   */
  lagPeakMs(now = Date.now()): number {
    let peak = this.lagMs(now);
    for (const p of this.peaks) if (p.at >= now - PEAK_WINDOW_MS && p.lag > peak) peak = p.lag;
    return peak;
  }

  private async run(): Promise<void> {
    let backoff = 50;
    while (!this.stopped) {
      const pass = this.barrier.begin();
      let took = false;
      try {
        const fp = this.fingerprint();
        this.observe(fp);
        const same = this.acked !== null && fp.key === this.acked.key;
        // A waiter needs an exact equality (or a new image); the idle loop trusts the key.
        if (!(same && (fp.exact || !this.barrier.pending))) {
          await this.snapshot();
          took = true;
        }
        backoff = 50;
        this.state = 'streaming';
        this.lastError = undefined;
      } catch (e) {
        if (this.stopped) break;
        const msg = e instanceof Error ? e.message : String(e);
        if (this.lastError !== msg) this.log.warn({ err: msg }, 'snapshot replication of database interrupted; retrying');
        this.state = 'error';
        this.lastError = msg;
        this.lastImageSha = null; // the replica's copy is unknown: send the next image
        await this.sleep(backoff, 'backoff');
        backoff = Math.min(backoff * 2, isUnderstudyError(e) && e.code === 'US_STALE_EPOCH' ? 5000 : 2000);
        continue;
      }
      if (this.stopped) break;
      this.barrier.done(pass);
      if (!this.barrier.pending) await this.sleep(this.opts.idlePollMs, 'idle');
      else if (!took) continue;
    }
  }

  /** Takes an image and ships it; acknowledges the state it holds. */
  private async snapshot(): Promise<void> {
    if (this.acked === null) this.state = 'snapshotting';
    const t0 = Date.now();
    const before = this.fingerprint();
    const beforeLsn = this.observe(before);
    const { image, inside } = await this.takeImage();
    // In rollback-journal mode the fingerprint read under the shared lock is the image's
    // own state; in WAL mode commits go on during the read, so the one read before it
    // (a state the image contains) is what the image is known to hold.
    const held = inside !== null && inside.mode === 'rollback' ? inside : before;
    const heldLsn = held === inside ? this.observe(inside) : beforeLsn;
    const sha = createHash('sha256').update(image).digest('hex');
    if (sha === this.lastImageSha) {
      this.noteAcked(heldLsn, held); // the replica holds this very image already
      return;
    }
    const generation = nextGeneration();
    // Small images go whole: two requests (image, commit) instead of four, and no copy of
    // the replica's file to hash — what the sync barrier waits for at every write.
    const seed = await sendImage(
      { client: this.opts.client, rel: this.rel, chunkBytes: this.opts.chunkBytes, log: this.log, stopped: () => this.stopped, diffMinBytes: SEND_WHOLE_BELOW },
      generation,
      image,
      Buffer.alloc(0),
    );
    if (seed === null) return; // stopped
    this.generation = generation;
    this.lastImageSha = sha;
    this.lastSeed = { ...seed, at: Date.now() };
    this.snapshots++;
    this.lastSnapshotMs = Date.now() - t0;
    this.noteAcked(heldLsn, held);
    if (this.snapshots === 1)
      this.log.info({ generation, kind: seed.kind, dbBytes: seed.dbBytes, ms: this.lastSnapshotMs }, 'database shipped by snapshots (not in WAL mode)');
    else this.log.debug({ generation, kind: seed.kind, bytesSent: seed.bytesSent, ms: this.lastSnapshotMs }, 'database snapshot shipped');
  }

  /**
   * One image inside a read transaction. SQLite's shared lock is asked for with a short
   * busy timeout and retried from the event loop (a writer committing holds the
   * database for a moment; this process's API must not freeze meanwhile), up to
   * `lockWaitMs`: an app that never lets go (exclusive locking mode) leaves the database
   * unprotected, and says so.
   */
  private async takeImage(): Promise<{ image: Buffer; inside: Fingerprint | null }> {
    const deadline = Date.now() + this.opts.lockWaitMs;
    for (;;) {
      let db: Database.Database | null = null;
      try {
        db = new Database(this.dbPath, { fileMustExist: true });
        db.pragma('busy_timeout = 20');
        db.exec('BEGIN');
        db.prepare('SELECT count(*) FROM sqlite_master').get(); // the read starts: one committed state from here
        let inside: Fingerprint | null = null;
        try {
          inside = this.fingerprint();
        } catch {
          /* gone: the image stands alone */
        }
        const image = db.serialize();
        db.exec('COMMIT');
        if (!startsWithMagic(image)) throw new UnderstudyError('US_VOLUME_DAMAGED', `${this.dbPath}: the image read is not an SQLite database`);
        return { image, inside };
      } catch (e) {
        const code = (e as { code?: string }).code ?? '';
        if (!code.startsWith('SQLITE_BUSY') || Date.now() > deadline || this.stopped) {
          if (e instanceof UnderstudyError) throw e;
          const busy = code.startsWith('SQLITE_BUSY')
            ? ` for ${this.opts.lockWaitMs} ms (does the app keep it locked, e.g. PRAGMA locking_mode=EXCLUSIVE?)`
            : '';
          throw new UnderstudyError('US_SNAPSHOT_UNAVAILABLE', `${this.dbPath}: cannot take a consistent snapshot${busy}: ${(e as Error).message}`);
        }
      } finally {
        try {
          if (db?.inTransaction) db.exec('ROLLBACK');
        } catch {
          /* closing anyway */
        }
        db?.close();
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
