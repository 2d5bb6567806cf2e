import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { ReplicationState } from '../shared/contracts.ts';
import { UnderstudyError, isUnderstudyError } from '../shared/errors.ts';
import { type WalChecksum } from './wal-checksum.ts';
import { WAL_HEADER_SIZE, frameOffset, frameSize, parseWalHeader, sameWalGeneration, scanFrames, type WalHeader } from './wal-format.ts';
import { readWalIndexHeader, type WalIndexHeader } from './wal-index.ts';
import { CatchUpBarrier, type WalPosition } from './catch-up-barrier.ts';
import type { ReplicaClient } from './replica-protocol.ts';
import { PageRecord } from './page-record.ts';
import { inspectWalChain, type WalEnd } from './wal-chain-check.ts';
import { sendImage } from './image-sender.ts';
import type { GenerationSeed, VerificationProblem } from '../shared/contracts.ts';

/**
 * Ships one SQLite database (WAL mode) to a replica by copying verbatim WAL frames,
 * in the manner of Litestream. The replica is at every instant "a snapshot image +
 * a verbatim prefix of the source WAL", so it always opens as a consistent database.
 *
 * Two connections to the source database:
 *  - R holds a read transaction at all times (except inside a window where W holds
 *    the write lock). A reader pins the WAL: a checkpoint cannot backfill past its
 *    read mark, and the WAL cannot be restarted while it reads from the WAL; a
 *    reader on read-mark 0 (WAL fully backfilled) lets at most one restart happen,
 *    after which no backfill (hence no second restart) is possible. So between two
 *    polls the WAL restarts at most once, and only when every frame we have not
 *    shipped was captured first (see `checkpointCycle`).
 *  - W takes the write lock (BEGIN IMMEDIATE; app writers wait on their busy_timeout)
 *    for the short windows in which we must see a still WAL: a new generation
 *    (snapshot) and the checkpoint cycle. R alone cannot do both (a connection cannot
 *    start a write transaction inside a read one), and releasing R before locking
 *    would open a window in which the app may restart the WAL under us.
 *
 * Positions: a position is `walSeq * 2^32 + frame`, where walSeq numbers the WAL
 * generations this shipper followed (+1 at every WAL restart, +2 at every snapshot, so
 * a snapshot orders after anything seen before it). `ackedLsn` is the position the
 * replica confirmed, `seenLsn` the last commit seen in the source. A caller that wants
 * "has the replica got everything committed so far?" takes `position()` and waits
 * until `ackedLsn` reaches it (VolumeShipper.waitConfirmed). Sync mode uses the
 * stronger `catchUp()` instead (see catch-up-barrier.ts and the argument at `run()`).
 */
export interface DbShipperOptions {
  volumeDir: string;
  /** Path of the database relative to the volume, e.g. `orders.db`. */
  rel: string;
  client: ReplicaClient;
  logger: Logger;
  /** WAL frames after which the shipper runs a PASSIVE checkpoint once all is shipped. @default 1000 */
  checkpointFrames?: number;
  /** Idle poll interval; after a poll that found work it polls again at once. @default 10 */
  idlePollMs?: number;
  /** Bytes per snapshot chunk request. @default 8 MiB */
  chunkBytes?: number;
  /** Most bytes of WAL read (and shipped) per poll. @default 16 MiB */
  maxBatchBytes?: number;
  /** Called whenever `ackedLsn` grows. */
  onAck?: () => void;
  /**
   * The last position confirmed by the replica in an earlier run (persisted by the live
   * copy check): a new generation refuses a WAL that no longer reaches it (see `newGeneration`).
   */
  knownEnd?: () => WalEnd | null;
  /** Idle time after which the replica is asked whether it still holds what was shipped (`held`); 0: never. @default 0 */
  heartbeatMs?: number;
}

/** What the shipper knows the replica holds of this database: the position and the page record there. */
export interface ShippedState {
  end: WalEnd;
  record: PageRecord | null;
}

interface Track {
  /** Header of the WAL generation the replica continues; null when the file had none. */
  hdr: WalHeader | null;
  /** True when `hdr` is a leftover header (the live WAL had no frames at the snapshot). */
  stale: boolean;
  /** Last frame of the current WAL the replica holds. */
  lastFrame: number;
  /** Checksum at `lastFrame` (the header's when 0). */
  checksum: WalChecksum;
  /** Number of this WAL generation (see positions above). */
  walSeq: number;
}

const WAL_SPAN = 2 ** 32;
function lsnOf(walSeq: number, frame: number): number {
  return walSeq * WAL_SPAN + frame;
}

class GapError extends Error {}

/** First read of a pass (see `shipFrom`): 60 frames of 4 KiB pages, below SYNC_READ_MAX. */
const FIRST_READ_BYTES = 60 * (4096 + 24);

/** WAL reads up to this size are done synchronously (see `readWal`). */
const SYNC_READ_MAX = 256 * 1024;

function readAsync(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * What one pass achieved: `idle` nothing was committed beyond what the replica holds;
 * `shipped` it shipped (and had acknowledged) every commit the WAL held when read;
 * `more` it did part of the work (a WAL switch, a batch cut short): pass again at once.
 * `idle` and `shipped` are "caught up" for the sync barrier.
 */
type Pass = 'idle' | 'shipped' | 'more';

let generationCounter = 0;
/** Unique, increasing generation numbers (ms clock, bumped on collisions). */
export function nextGeneration(): number {
  generationCounter = Math.max(Date.now(), generationCounter + 1);
  return generationCounter;
}

export class DbShipper {
  readonly rel: string;
  private readonly dbPath: string;
  private readonly walPath: string;
  private readonly shmPath: string;
  private readonly opts: Required<Omit<DbShipperOptions, 'onAck' | 'knownEnd'>> & Pick<DbShipperOptions, 'onAck' | 'knownEnd'>;
  private readonly log: Logger;
  private R: Database.Database | null = null;
  private W: Database.Database | null = null;
  private track: Track | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private watcher: fs.FSWatcher | null = null;
  private lastCkpt: unknown = null;
  /** The buffer of a pass's first WAL read (see `readWal`). */
  private window: Buffer | null = null;
  /** Position of the last checkpoint cycle: one cycle per position is enough. */
  private lastCycleLsn = -1;
  /** The pages of the database at the position the replica confirmed (page-record.ts). */
  private record: PageRecord | null = null;
  /** The last position the replica confirmed (kept across generations, for the damage check of the next one). */
  private lastShipped: WalEnd | null = null;
  /** Set when the WAL failed its check before a checkpoint: no checkpoint copies its frames into the db file. */
  private damaged: VerificationProblem[] | null = null;
  /** The last WAL-index header read with the salts of the WAL being shipped: its mxFrame bounds what is shipped (see `shipFrom`). */
  private indexSeen: WalIndexHeader | null = null;
  /** When the replica last answered a request of ours (for the idle heartbeat). */
  private lastContactAt = 0;
  private heartbeatOff = false;

  state: ReplicationState = 'none';
  generation = 0;
  /** How the current generation's image reached the replica (full or differential) and what it cost. */
  lastSeed: GenerationSeed | null = null;
  lastError: string | undefined;
  ackedLsn = 0;
  seenLsn = 0;
  private walSeq = 0;
  /** Commit positions seen but not acked yet, oldest first, with when they were seen. */
  private pending: { lsn: number; at: number }[] = [];
  private readonly barrier = new CatchUpBarrier();
  /** Barrier number of the running pass, taken right before its first look at the files (0: not yet). */
  private pass = 0;
  /** What the loop sleeps for: a sync waiter wakes an idle sleep only, never a backoff. */
  private sleeping: 'idle' | 'backoff' | null = null;

  constructor(opts: DbShipperOptions) {
    this.opts = { checkpointFrames: 1000, idlePollMs: 10, chunkBytes: 8 << 20, maxBatchBytes: 16 << 20, heartbeatMs: 0, ...opts };
    this.rel = opts.rel;
    this.dbPath = path.join(opts.volumeDir, opts.rel);
    this.walPath = `${this.dbPath}-wal`;
    this.shmPath = `${this.dbPath}-shm`;
    this.log = opts.logger.child({ db: opts.rel });
  }

  start(): void {
    if (this.loop) return;
    this.stopped = false;
    try {
      // A hint only: polling is the truth (watch events are coalesced and may be lost).
      this.watcher = fs.watch(path.dirname(this.dbPath), { persistent: false }, (_ev, name) => {
        if (name && String(name).startsWith(path.basename(this.dbPath))) this.poke();
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null;
    }
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
    this.watcher?.close();
    this.watcher = null;
    await this.loop;
    this.loop = null;
    this.closeConnections();
    if (this.state !== 'none') this.state = 'stopped';
  }

  /**
   * What the replica holds of this database (null while a generation is being shipped,
   * or when the WAL has no live frame yet): read synchronously by the live copy check,
   * which compares the source's WAL and db file with it.
   */
  shippedState(): ShippedState | null {
    const t = this.track;
    if (!t || t.stale || !t.hdr || !this.lastShipped) return null;
    return { end: this.lastShipped, record: this.record };
  }

  /** Age of the oldest committed change not yet confirmed by the replica (0 when caught up). */
  lagMs(now = Date.now()): number {
    const first = this.pending[0];
    return first ? Math.max(0, now - first.at) : 0;
  }

  /** Reads the WAL now and returns the position of the last commit seen. */
  async position(): Promise<number> {
    try {
      await this.observe();
    } catch {
      /* the loop reports errors */
    }
    return this.seenLsn;
  }

  /**
   * Sync mode: resolves once the replica has on its disk every transaction committed
   * in this database before the call. Wakes the loop from its idle sleep at once; the
   * callers of one pass share it (group commit). No timeout: race it. Rejects when the
   * shipper stops.
   */
  catchUp(): Promise<void> {
    // Where the source's commit history stands now, after the caller's commit: released
    // as soon as the replica acknowledged that position (possibly by the pass in flight).
    const idx = readWalIndexHeader(this.shmPath);
    const p = this.barrier.wait(idx === null ? null : { salt1: idx.salt1, salt2: idx.salt2, frame: idx.mxFrame });
    if (this.sleeping === 'idle' && this.barrier.pending) this.poke();
    return p;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number, kind: 'idle' | 'backoff' = 'idle'): Promise<void> {
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

  /*
   * Why the sync barrier (`catchUp`) cannot let an acknowledged write slip.
   *
   * The director calls it after the app answered, so the write's commit frame C was in
   * the WAL file and its end published in the WAL index (the app runs synchronous=FULL
   * and answers after COMMIT, which publishes before it returns) before the waiter
   * registered, and the pass that releases the waiter took its number (right before its
   * first read of the files; CatchUpBarrier) after that. Every pass reads the WAL *file*
   * (header, then the index, then frames from the last shipped one to the end the index
   * published), never a position remembered from earlier. At the pass's read, C is:
   *  (a) in the WAL generation whose header the pass read: the index read after the pass
   *      began names an end at or after C, so the frames read through it include C (see
   *      `shipFrom`; a chain that stops before that end is damage, which the live copy
   *      check reports); the pass counts as caught up only if it read to that end (not
   *      cut at a window or at maxBatchBytes) and its frames were acknowledged (the
   *      replica answers once they are on its disk). A restart after the header read does
   *      not matter: all its commits come after the pass began (`finishedWal`);
   *  (b) in a WAL the app restarted since (a checkpoint folded C into the db file and
   *      a writer began a new WAL): the header differs, `switchWal` first ships the old
   *      WAL's unshipped tail (still in the file: R pins the WAL, so a restart only
   *      happens once every frame of the old WAL was captured or shipped — see the
   *      class comment) and reports `more`; a following pass ships the new WAL. A
   *      restart the shipper cannot follow gaplessly is a GapError: a new generation;
   *  (c) gone from any WAL the shipper can read (a TRUNCATE checkpoint, or a gap): only
   *      possible when everything up to C had been captured under the write lock, or
   *      the pass is a new generation, whose image is taken under the write lock after
   *      the pass began and so contains C.
   * A pass that fails (replica down, refused, stale epoch) releases nobody; the loop
   * retries with a new generation, which covers everything committed before it began.
   *
   * The second way out (by position; it lets a waiter join the pass in flight). At
   * registration, after the commit, `catchUp` reads the WAL-index header: salts S and
   * mxFrame m, a committed state SQLite published at or after C's commit (C's COMMIT
   * wrote it before returning; a torn read fails the copy/checksum test and falls back
   * to the pass rule). The source's history is linear: the state (S, m) includes C. The
   * replica holds, verbatim, a snapshot image plus a prefix of the source's WAL, so once
   * it acknowledged (after fsync) the last commit frame F of the WAL with salts S, its
   * database is the source's state (S, F), and F ≥ m means it includes (S, m), hence
   * C. Salts name one WAL generation (salt1 counts restarts, salt2 is random; the same
   * assumption as `sameWalGeneration`), so other salts release nobody this way. A
   * waiter already covered at registration is released at once. Acknowledged data stays
   * on the replica's disk until a new generation replaces its files, so the position is
   * forgotten when a pass fails and when a generation begins, and set again only after
   * the new image is acknowledged.
   * So a released waiter's write is on the replica's disk, whatever the timing.
   *
   * Plain files (FileShipper) are outside the barrier; databases not in WAL mode have
   * their own (SnapshotShipper: a snapshot taken after the call).
   */
  private async run(): Promise<void> {
    let backoff = 50;
    let needGeneration = true;
    while (!this.stopped) {
      let pass: Pass;
      this.pass = 0;
      try {
        if (needGeneration) {
          await this.newGeneration();
          needGeneration = false;
          pass = 'shipped';
        } else {
          pass = await this.pollOnce();
          if (pass === 'idle') await this.heartbeat();
        }
        backoff = 50;
        this.state = 'streaming';
        this.lastError = undefined;
      } catch (e) {
        if (this.stopped) break;
        needGeneration = true;
        this.barrier.invalidate(); // the next generation replaces the replica's files
        const msg = e instanceof Error ? e.message : String(e);
        if (e instanceof GapError) {
          this.log.info({ reason: msg }, 'WAL gap; starting a new generation');
          continue;
        }
        if (this.lastError !== msg)
          this.log.warn({ err: msg, generation: this.generation }, 'replication of database interrupted; will resume with a new generation');
        this.state = 'error';
        this.lastError = msg;
        try {
          await this.observe();
        } catch {
          /* keep the lag growing from what we saw */
        }
        await this.sleep(backoff, 'backoff');
        backoff = Math.min(backoff * 2, isUnderstudyError(e) && e.code === 'US_STALE_EPOCH' ? 5000 : 2000);
        continue;
      }
      if (pass !== 'more' && !this.stopped && this.pass > 0) this.barrier.done(this.pass);
      if (pass === 'idle' && !this.barrier.pending && !this.stopped) await this.sleep(this.opts.idlePollMs);
    }
  }

  // ------------------------------------------------------------ connections and file reads

  private openConnections(): void {
    if (this.R && this.W) return;
    this.closeConnections();
    const R = new Database(this.dbPath, { fileMustExist: true });
    const W = new Database(this.dbPath, { fileMustExist: true });
    R.pragma('busy_timeout = 5000');
    W.pragma('busy_timeout = 20');
    this.R = R;
    this.W = W;
  }

  private closeConnections(): void {
    for (const c of [this.R, this.W]) {
      try {
        if (c?.inTransaction) c.exec('ROLLBACK');
      } catch {
        /* closing anyway */
      }
      try {
        c?.close();
      } catch {
        /* already closed */
      }
    }
    this.R = null;
    this.W = null;
  }

  /** Starts (or restarts) R's read transaction at the newest committed state. */
  private beginRead(): void {
    const R = this.R!;
    if (R.inTransaction) R.exec('ROLLBACK');
    R.exec('BEGIN');
    R.prepare('SELECT count(*) FROM sqlite_master').get();
  }

  /**
   * Runs `fn` while W holds the database's write lock: no app transaction can commit
   * meanwhile. W waits at most 20 ms per attempt (synchronously) and retries from the
   * event loop, so a long app transaction does not freeze this process's API.
   */
  private async withWriteLock<T>(fn: () => T): Promise<T> {
    const W = this.W!;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        W.exec('BEGIN IMMEDIATE');
        break;
      } catch (e) {
        const code = (e as { code?: string }).code ?? '';
        if (!code.startsWith('SQLITE_BUSY') || Date.now() > deadline || this.stopped) {
          throw new UnderstudyError(
            'US_SNAPSHOT_UNAVAILABLE',
            `${this.dbPath}: cannot take the write lock for a consistent snapshot: ${(e as Error).message}; retried: if it repeats, look for an app transaction that holds the database locked`,
          );
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    try {
      return fn();
    } finally {
      W.exec('ROLLBACK');
    }
  }

  /**
   * Reads up to `maxBytes` of the WAL from `offset` (to the end of the file as it is
   * now). Small reads — the steady state: a header, a few frames — are synchronous:
   * page-cache reads of a few KiB cost microseconds, far less than the thread-pool
   * round trips of async calls, and they are on the sync-mode write path. Larger
   * reads go through the thread pool so that the API stays responsive.
   */
  private async readWal(offset: number, maxBytes: number, reuse = false): Promise<Buffer> {
    let fd: number;
    try {
      fd = fs.openSync(this.walPath, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
      throw e;
    }
    try {
      const { size } = fs.fstatSync(fd);
      const n = Math.max(0, Math.min(size - offset, maxBytes));
      // Only the `got` bytes read are returned. `reuse`: the pass's first window goes into
      // one buffer kept for it (a fresh one at every pass made the GC a sizeable share of
      // the sync write path); its content is valid until the next `reuse` read.
      const buf = reuse && n <= FIRST_READ_BYTES ? (this.window ??= Buffer.allocUnsafe(FIRST_READ_BYTES)) : Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const r = n <= SYNC_READ_MAX ? fs.readSync(fd, buf, got, n - got, offset + got) : await readAsync(fd, buf, got, n - got, offset + got);
        if (r === 0) break;
        got += r;
      }
      return buf.subarray(0, got);
    } finally {
      fs.closeSync(fd);
    }
  }

  private readWalSync(offset: number, length: number): Buffer {
    let fd: number;
    try {
      fd = fs.openSync(this.walPath, 'r');
    } catch {
      return Buffer.alloc(0);
    }
    try {
      const buf = Buffer.alloc(length);
      const got = fs.readSync(fd, buf, 0, length, offset);
      return buf.subarray(0, got);
    } finally {
      fs.closeSync(fd);
    }
  }

  // ------------------------------------------------------------ positions and lag

  private noteSeen(lsn: number): void {
    if (lsn <= this.seenLsn) return;
    this.seenLsn = lsn;
    const last = this.pending[this.pending.length - 1];
    if (!last || last.lsn < lsn) this.pending.push({ lsn, at: Date.now() });
  }

  private noteAcked(lsn: number): void {
    if (lsn > this.ackedLsn) this.ackedLsn = lsn;
    if (this.ackedLsn > this.seenLsn) this.seenLsn = this.ackedLsn;
    while (this.pending.length > 0 && this.pending[0]!.lsn <= this.ackedLsn) this.pending.shift();
    this.opts.onAck?.();
  }

  /** Updates `seenLsn` from the WAL without shipping (for lag and `position()`). */
  private async observe(): Promise<void> {
    const t = this.track;
    if (!t) return;
    const hdr = parseWalHeader(await this.readWal(0, WAL_HEADER_SIZE));
    if (!hdr) return;
    if (t.stale || !t.hdr || !sameWalGeneration(hdr, t.hdr)) {
      if (t.stale && t.hdr && sameWalGeneration(hdr, t.hdr)) return; // still the leftover header
      // A new WAL not processed yet: its commits come after anything of the current one.
      const last = await this.lastCommit(hdr, 1, hdr.checksum);
      if (last >= 1) this.noteSeen(lsnOf(t.walSeq + 1, last));
      return;
    }
    // Frames after the published end are not commits yet (see `shipFrom`).
    const idx = readWalIndexHeader(this.shmPath);
    const published = idx && idx.salt1 === hdr.salt1 && idx.salt2 === hdr.salt2 ? idx.mxFrame : Infinity;
    const last = Math.min(published, await this.lastCommit(hdr, t.lastFrame + 1, t.checksum));
    if (last > t.lastFrame) this.noteSeen(lsnOf(t.walSeq, last));
  }

  /** Index of the last valid commit frame from `first` on, reading the whole WAL in batches. */
  private async lastCommit(hdr: WalHeader, first: number, prev: WalChecksum): Promise<number> {
    let last = first - 1;
    let index = first;
    let ck = prev;
    for (;;) {
      const data = await this.readWal(frameOffset(hdr.pageSize, index), this.opts.maxBatchBytes);
      const scan = scanFrames(data, hdr, index, ck);
      if (scan.lastCommitIndex >= index) last = scan.lastCommitIndex;
      const whole = Math.floor(data.length / frameSize(hdr.pageSize));
      if (scan.stop !== 'end' || scan.validFrames < whole || whole === 0 || data.length < this.opts.maxBatchBytes - frameSize(hdr.pageSize)) return last;
      // Continue after the last commit of this batch (frames after it are re-read).
      if (scan.lastCommitIndex < index) return last; // one transaction larger than a batch: good enough
      index = scan.lastCommitIndex + 1;
      ck = scan.lastCommitChecksum;
    }
  }

  // ------------------------------------------------------------ new generation

  /**
   * Snapshot: under the write lock, R re-reads at the newest state and we read which
   * part of the WAL is live (from the WAL index) and its frames verbatim; then, the lock
   * released, R.serialize() — the database image at exactly that state, from R's read
   * transaction. The replica installs image + WAL header + frames 1..P.
   */
  private async newGeneration(): Promise<void> {
    // Installing the snapshot replaces the replica's files: acknowledged positions no
    // longer hold until it is installed (then `acked` below).
    this.barrier.invalidate();
    this.pass = this.barrier.begin(); // before the write lock: the image is taken after this
    this.state = 'snapshotting';
    this.openConnections();
    const generation = nextGeneration();
    const walSeq = this.walSeq + 2;
    let wal!: Buffer;
    let track!: Track;
    // Under the write lock only reads: the WAL index, the WAL's header and its live frames'
    // bytes, and R's read beginning at exactly that state. The frames are verified after
    // the lock is released (a checksum pass over a WAL of a few MB takes milliseconds the
    // app's writers would otherwise wait).
    const held = await this.withWriteLock(() => {
      // W's BEGIN IMMEDIATE brought the WAL index up to date (running SQLite's recovery if
      // nobody had the database open), and nothing commits nor restarts the WAL until the
      // end of this block.
      const idx = readWalIndexHeader(this.shmPath);
      if (!idx)
        throw new UnderstudyError(
          'US_WAL_UNREADABLE',
          `${this.dbPath}-shm: cannot read the WAL index; is the database in WAL mode? A new snapshot is tried; if this repeats, see the storage log`,
        );
      const fileHdr = parseWalHeader(this.readWalSync(0, WAL_HEADER_SIZE));
      const live = fileHdr !== null && fileHdr.salt1 === idx.salt1 && fileHdr.salt2 === idx.salt2;
      const body = idx.mxFrame > 0 && live ? this.readWalSync(WAL_HEADER_SIZE, idx.mxFrame * frameSize(fileHdr.pageSize)) : null;
      this.beginRead();
      return { idx, fileHdr, live, body };
    });
    const { idx, fileHdr, live, body } = held;
    // The image is the state the WAL index names: nothing committed under the write lock.
    const imagePos: WalPosition = { salt1: idx.salt1, salt2: idx.salt2, frame: idx.mxFrame };
    this.indexSeen = idx;
    try {
      // R's read began at that state: it is used (serialize) only if the WAL it reads
      // through is whole up to there, else the generation is refused (refuseDamaged).
      const scan = body && fileHdr ? scanFrames(body, fileHdr, 1, fileHdr.checksum) : null;
      this.refuseDamaged(idx, live, body, scan);
      if (idx.mxFrame > 0) {
        if (!live || !body || !scan || !fileHdr)
          throw new UnderstudyError('US_WAL_UNREADABLE', `${this.walPath}: the WAL header does not match the WAL index; a new snapshot is tried`);
        if (scan.lastCommitIndex < idx.mxFrame) {
          throw new UnderstudyError(
            'US_WAL_UNREADABLE',
            `${this.walPath}: live frames 1..${idx.mxFrame} do not verify (valid commits up to ${scan.lastCommitIndex}); a new snapshot is tried`,
          );
        }
        wal = Buffer.concat([fileHdr.raw, scan.frames.subarray(0, idx.mxFrame * frameSize(fileHdr.pageSize))]);
        track = { hdr: fileHdr, stale: false, lastFrame: idx.mxFrame, checksum: scan.lastCommitChecksum, walSeq };
      } else if (live && fileHdr) {
        wal = Buffer.from(fileHdr.raw);
        track = { hdr: fileHdr, stale: false, lastFrame: 0, checksum: fileHdr.checksum, walSeq };
      } else {
        // The file's header (if any) is a leftover: the next write starts a new one.
        wal = Buffer.alloc(0);
        track = { hdr: fileHdr, stale: true, lastFrame: 0, checksum: [0, 0], walSeq };
      }
    } catch (e) {
      // No image of it: R lets go of the WAL (its read mark would keep checkpoints from passing it).
      if (this.R?.inTransaction) this.R.exec('ROLLBACK');
      throw e;
    }
    // The image is copied after the write lock is released, under R's read transaction,
    // which began under the lock at exactly the state the WAL index named: SQLite keeps
    // that snapshot for R while the app commits again (its frames go after R's read mark;
    // a checkpoint cannot copy past it). The app's writers wait for the WAL's few frames
    // above, never for the copy of a whole database.
    const image = this.R!.serialize();
    const capturedLsn = lsnOf(walSeq, track.lastFrame);
    this.noteSeen(capturedLsn);
    this.walSeq = walSeq;
    this.track = null;
    this.record = null;
    this.generation = generation;
    // The image is the database at the track's position: the page record starts from it
    // (hashed off the event loop, while the image is sent).
    const recordOf = PageRecord.ofImage(image);
    recordOf.catch(() => undefined); // awaited below, unless the send fails first
    const seed = await this.sendImage(generation, image, wal);
    if (seed === null) return; // stopped
    const record = await recordOf;
    this.track = track;
    this.record = record;
    this.damaged = null;
    this.lastContactAt = Date.now();
    // The replica holds the state (salts, mxFrame) of the WAL index at the image — also
    // when the WAL had no live frame (mxFrame 0, the database file held everything): an
    // idle database (catalog.db) then releases its barriers by position at once, since
    // its WAL index does not move, instead of needing a pass per barrier. Its next
    // commit continues that WAL (same salts, frames from 1) or restarts it (new salts).
    this.barrier.acked(imagePos);
    this.ackedAt(track);
    this.noteAcked(capturedLsn);
    this.lastSeed = { ...seed, at: Date.now() };
    this.log.info(
      {
        generation,
        kind: seed.kind,
        bytesSent: seed.bytesSent,
        dbBytes: seed.dbBytes,
        blocksSent: seed.blocksSent,
        blocks: seed.blocks,
        walFrames: track.lastFrame,
        ...(seed.fallback ? { fallback: seed.fallback } : {}),
      },
      'database snapshot shipped',
    );
  }

  /** Sends a generation's image and WAL part (image-sender.ts); null when stopped meanwhile. */
  private sendImage(generation: number, image: Buffer, wal: Buffer): Promise<GenerationSeed | null> {
    return sendImage(
      { client: this.opts.client, rel: this.rel, chunkBytes: this.opts.chunkBytes, log: this.log, stopped: () => this.stopped },
      generation,
      image,
      wal,
    );
  }

  // ------------------------------------------------------------ steady state

  /** One look at the WAL; ships what is new (see `Pass`). */
  private async pollOnce(): Promise<Pass> {
    const t = this.track!;
    // The pass's number is taken right before the WAL is read: a waiter registered until
    // here is served by this pass (its commit precedes this read); a later one by the next.
    this.pass = this.barrier.begin();
    const hdr = parseWalHeader(await this.readWal(0, WAL_HEADER_SIZE));
    if (!hdr) return 'idle'; // no WAL, or truncated and not rewritten yet (case (c) at `run()`)
    if (t.stale || t.hdr === null || !sameWalGeneration(hdr, t.hdr)) {
      if (t.stale && t.hdr !== null && sameWalGeneration(hdr, t.hdr)) return 'idle'; // still the leftover header
      return this.switchWal(hdr);
    }
    const shipped = await this.shipFrom(hdr);
    // Under steady load there is always something new: the cycle captures it under the lock.
    const t2 = this.track!;
    // A damaged WAL is not checkpointed by us any more (see checkpointCycle).
    if (shipped !== 'more' && !this.damaged && t2.lastFrame >= this.opts.checkpointFrames && lsnOf(t2.walSeq, t2.lastFrame) !== this.lastCycleLsn)
      return this.checkpointCycle();
    return shipped;
  }

  /**
   * Ships the committed frames after `track.lastFrame` in the current WAL, up to the
   * end SQLite published in the WAL index (mxFrame).
   *
   * Why the index and not the frames alone: a writer appends a transaction's frames
   * (commit frame last) and only then publishes the new end in the index. A writer
   * killed between the two leaves a valid chain of frames, commit frame included, that
   * no reader sees and that was never acknowledged to anyone; while another connection
   * keeps the index alive (ours always does), SQLite does not run recovery, and the next
   * writer overwrites those frames from mxFrame + 1. Shipping them would give the replica
   * a transaction the source does not have, and the next frames would no longer continue
   * the replica's chain. Only a fresh open's recovery (nobody holding the index) would
   * keep them; then they are published in the index before anything reads them.
   *
   * Reads a small window first (the steady state: a few new frames) and the whole batch
   * only when the window held nothing but valid frames. The WAL file is usually much
   * longer than its live part — SQLite restarts a WAL without truncating it, so frames
   * of the previous generation (other salts) follow the live ones — and reading those
   * megabytes at every pass cost the sync-mode write path most of its CPU. The pass
   * still sees everything committed before it began: a commit returns to the app only
   * after its end was published, and the index is read after the pass began.
   */
  private async shipFrom(hdr: WalHeader): Promise<Pass> {
    const t = this.track!;
    const idx = await this.publishedIndex();
    if (idx.salt1 !== hdr.salt1 || idx.salt2 !== hdr.salt2) return this.finishedWal(hdr);
    this.indexSeen = idx;
    if (idx.mxFrame < t.lastFrame) {
      throw new GapError(`${this.walPath}: the WAL index ends at frame ${idx.mxFrame}, before frame ${t.lastFrame} already shipped; shipping a snapshot`);
    }
    if (idx.mxFrame === t.lastFrame) return 'idle';
    const fsz = frameSize(hdr.pageSize);
    const want = (idx.mxFrame - t.lastFrame) * fsz;
    const limit = Math.min(this.opts.maxBatchBytes, want);
    const at = frameOffset(hdr.pageSize, t.lastFrame + 1);
    let window = Math.min(FIRST_READ_BYTES, limit);
    let data = await this.readWal(at, window, true); // used up (sent) before the next pass
    let scan = scanFrames(data, hdr, t.lastFrame + 1, t.checksum);
    if (data.length >= window && scan.stop === 'end' && window < limit) {
      window = limit;
      data = await this.readWal(at, window);
      scan = scanFrames(data, hdr, t.lastFrame + 1, t.checksum);
    }
    // Read through the published end, or to where the file or the chain ends before it
    // (damage: the frames that verify ship, the live copy check reports the rest).
    const toEnd = data.length >= want || data.length < window || scan.stop !== 'end';
    if (scan.lastCommitIndex <= t.lastFrame) {
      if (!toEnd && scan.stop === 'end') {
        throw new UnderstudyError('US_REPLICATION', `${this.dbPath}: a transaction larger than ${this.opts.maxBatchBytes} bytes; shipping a snapshot instead`);
      }
      return 'idle';
    }
    await this.sendFrames(hdr, undefined, scan.firstIndex, scan.frames, scan.lastCommitIndex, scan.lastCommitChecksum);
    return toEnd ? 'shipped' : 'more';
  }

  /**
   * The WAL-index header, read again when a read overlapped SQLite's update of it (the
   * two copies differ for the microseconds of a write). A header that stays unreadable is
   * one a writer left half-written when it died: only SQLite's recovery, which a new
   * generation's write lock runs, repairs it.
   */
  private async publishedIndex(): Promise<WalIndexHeader> {
    for (let i = 0; ; i++) {
      const idx = readWalIndexHeader(this.shmPath);
      if (idx) return idx;
      if (i === 3) throw new GapError(`${this.shmPath}: the WAL index header stays unreadable (a writer died updating it); shipping a snapshot`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * The WAL index names a newer WAL than the file's header (a restart under way: the index
   * is reset before the new header is written). The old WAL is finished; its commits end at
   * the last published end seen for it. Committed-looking frames after that end cannot be
   * told from a dead writer's unpublished ones now that the index moved on: a snapshot
   * settles it. The class comment explains why that does not happen in practice (every
   * frame of a WAL is captured before it can restart).
   */
  private async finishedWal(hdr: WalHeader): Promise<Pass> {
    const t = this.track!;
    const tail = this.readWalSync(frameOffset(hdr.pageSize, t.lastFrame + 1), FIRST_READ_BYTES);
    const scan = scanFrames(tail, hdr, t.lastFrame + 1, t.checksum);
    this.refuseUnpublishedTail(hdr, scan.lastCommitIndex);
    if (scan.lastCommitIndex > t.lastFrame) {
      await this.sendFrames(hdr, undefined, scan.firstIndex, scan.frames, scan.lastCommitIndex, scan.lastCommitChecksum);
      return 'more';
    }
    // Nothing of the old WAL is left to ship: the next look finds the new header (or the
    // same one, if the restarting writer died before writing a frame).
    return 'idle';
  }

  /**
   * An old WAL's commits end at the last end the index published for it (`indexSeen`, or
   * what was shipped when none was seen): a commit frame found after it, once the index
   * moved to a new WAL, may be a dead writer's unpublished one — a GapError (a snapshot).
   */
  private refuseUnpublishedTail(old: WalHeader, lastCommitIndex: number): void {
    const t = this.track!;
    const seen = this.indexSeen && this.indexSeen.salt1 === old.salt1 && this.indexSeen.salt2 === old.salt2 ? this.indexSeen.mxFrame : t.lastFrame;
    if (lastCommitIndex > Math.max(seen, t.lastFrame)) {
      throw new GapError(`${this.walPath}: the WAL restarted with frames after its last published end (${seen}) unshipped; shipping a snapshot`);
    }
  }

  private async sendFrames(
    hdr: WalHeader,
    newWal: Buffer | undefined,
    firstIndex: number,
    frames: Buffer,
    lastIndex: number,
    checksum: WalChecksum,
  ): Promise<void> {
    const walSeq = newWal ? this.track!.walSeq + 1 : this.track!.walSeq;
    const lsn = lsnOf(walSeq, lastIndex);
    this.noteSeen(lsn);
    const res = await this.opts.client.frames({
      db: this.rel,
      generation: this.generation,
      firstIndex,
      frames,
      ...(newWal ? { newWal } : {}),
    });
    if (res.lastFrame !== lastIndex)
      throw new UnderstudyError('US_REPLICA_MISMATCH', `replica acknowledged frame ${res.lastFrame}, expected ${lastIndex}: a new generation is shipped`);
    this.track = { hdr, stale: false, lastFrame: lastIndex, checksum, walSeq };
    this.walSeq = walSeq;
    this.ackedAt(this.track);
    this.noteAcked(lsn);
    this.record?.applyFrames(frames); // verified, committed, and now on the replica
    this.lastContactAt = Date.now();
  }

  /**
   * The replica acknowledged `t`: its database is the source's as of commit frame
   * `t.lastFrame` of the WAL with `t.hdr`'s salts (a leftover header names no state).
   */
  private ackedAt(t: Track): void {
    if (t.stale || t.hdr === null) return;
    this.barrier.acked({ salt1: t.hdr.salt1, salt2: t.hdr.salt2, frame: t.lastFrame });
    this.lastShipped = { salt1: t.hdr.salt1, salt2: t.hdr.salt2, frame: t.lastFrame, checksum: t.checksum };
  }

  /**
   * A new generation's check, under the write lock (nothing commits, the WAL cannot
   * restart), with the frames 1..mxFrame it read and scanned anyway: they must verify, and
   * the position the replica confirmed last (`lastShipped`, or the one an earlier run
   * persisted) must still be there with the checksum shipped — else SQLite's recovery
   * already dropped commits (a restart after damage). A copy that fails is damaged, and a
   * generation of it would replace the replica's good copy with its truncated state: it is
   * refused, before R moves (R's read mark bounds what a checkpoint may copy into the db
   * file). The live copy check reports the damage; the replica keeps what it holds.
   */
  private refuseDamaged(
    idx: { salt1: number; salt2: number; mxFrame: number },
    live: boolean,
    body: Buffer | null,
    scan: ReturnType<typeof scanFrames> | null,
  ): void {
    const known = this.lastShipped ?? this.opts.knownEnd?.() ?? null;
    let bad = idx.mxFrame > 0 && (!live || !body || !scan || scan.lastCommitIndex < idx.mxFrame);
    if (!bad && known && known.frame > 0 && known.salt1 === idx.salt1 && known.salt2 === idx.salt2) {
      if (idx.mxFrame < known.frame || !body) bad = true;
      else {
        // The chain verified: a frame's stored checksum is the chain's value there.
        const at = (known.frame - 1) * (body.length / idx.mxFrame) + 16;
        bad = body.readUInt32BE(at) !== known.checksum[0] || body.readUInt32BE(at + 4) !== known.checksum[1];
      }
    }
    if (!bad) return;
    // The detailed report (which frame, how many commits): read once more, on this rare path.
    const chain = inspectWalChain(this.dbPath, this.rel, { committed: { salt1: idx.salt1, salt2: idx.salt2, frames: idx.mxFrame }, known });
    const problems: VerificationProblem[] =
      chain.problems.length > 0
        ? chain.problems
        : [{ file: `${this.rel}-wal`, kind: 'wal-frame', detail: 'the WAL does not hold the frames committed and confirmed' }];
    this.damaged = problems;
    const p = problems[0]!;
    throw new UnderstudyError(
      'US_VOLUME_DAMAGED',
      `${path.join(this.opts.volumeDir, p.file)}: ${p.detail}; no new generation is shipped from a damaged copy (the replica keeps what it holds)`,
      { problems },
    );
  }

  /**
   * Idle: once every `heartbeatMs` the replica is asked whether it still holds what was
   * shipped (`held`). A replica that found its copy damaged, or restarted, answers
   * needSnapshot, and the loop ships a new generation: a replica is re-seeded even when
   * the database is not written. A replica that does not know the request (US_NOT_FOUND:
   * an older version, a reader copy) is not asked again.
   */
  private async heartbeat(): Promise<void> {
    const t = this.track;
    if (!t || this.heartbeatOff || this.opts.heartbeatMs <= 0 || Date.now() - this.lastContactAt < this.opts.heartbeatMs) return;
    this.lastContactAt = Date.now();
    try {
      await this.opts.client.held({ db: this.rel, generation: this.generation, lastFrame: t.lastFrame });
    } catch (e) {
      if (isUnderstudyError(e) && e.code === 'US_NOT_FOUND' && (e.details as { needSnapshot?: boolean } | undefined)?.needSnapshot !== true) {
        this.heartbeatOff = true;
        return;
      }
      throw e;
    }
  }

  /**
   * The WAL header changed: the app restarted the WAL (a checkpoint reached its end),
   * possibly truncating it. Gapless only if the checkpoint sequence is exactly +1 and
   * no committed frame of the old WAL beyond what we shipped is lost: frames at
   * lastFrame+1.. that still carry the old salts and continue our chain are shipped
   * first; a frame with the new salts inside that old tail means it was overwritten.
   * Anything else is a gap → new generation.
   */
  private async switchWal(hdr: WalHeader): Promise<Pass> {
    const t = this.track!;
    if (!t.stale && t.hdr !== null) {
      // One restart since: SQLite adds 1 to salt1 at each restart (from the index, so in any
      // process). The checkpoint sequence counts restarts per connection only: a new app
      // process starts it again, so it alone would call its first restart a gap.
      if (hdr.checkpointSeq !== (t.hdr.checkpointSeq + 1) >>> 0 && hdr.salt1 !== (t.hdr.salt1 + 1) >>> 0) {
        throw new GapError(
          `${this.walPath}: WAL restarted more than once (checkpoint sequence ${t.hdr.checkpointSeq} → ${hdr.checkpointSeq}, salt1 ${t.hdr.salt1} → ${hdr.salt1}); shipping a snapshot`,
        );
      }
      const old = t.hdr;
      const tail = await this.readWal(frameOffset(old.pageSize, t.lastFrame + 1), this.opts.maxBatchBytes);
      const scan = scanFrames(tail, old, t.lastFrame + 1, t.checksum);
      if (scan.validFrames > 0 && scan.stop === 'salt' && scan.stopSalts?.[0] === hdr.salt1 && scan.stopSalts[1] === hdr.salt2) {
        throw new GapError(`${this.walPath}: the old WAL's unshipped tail was overwritten by the new WAL; shipping a snapshot`);
      }
      this.refuseUnpublishedTail(old, scan.lastCommitIndex);
      if (scan.lastCommitIndex > t.lastFrame) {
        await this.sendFrames(old, undefined, scan.firstIndex, scan.frames, scan.lastCommitIndex, scan.lastCommitChecksum);
        return 'more'; // the next poll switches to the new WAL
      }
    }
    this.log.debug({ from: t.hdr?.checkpointSeq, to: hdr.checkpointSeq, lastFrame: t.lastFrame, stale: t.stale }, 'WAL switch');
    // Start the new WAL on the replica with its header and its published frames.
    const idx = await this.publishedIndex();
    if (idx.salt1 !== hdr.salt1 || idx.salt2 !== hdr.salt2) {
      throw new GapError(`${this.walPath}: the WAL index names another WAL than the new header; shipping a snapshot`);
    }
    this.indexSeen = idx;
    const body = await this.readWal(WAL_HEADER_SIZE, Math.min(this.opts.maxBatchBytes, idx.mxFrame * frameSize(hdr.pageSize)));
    const again = parseWalHeader(await this.readWal(0, WAL_HEADER_SIZE));
    if (!again || !sameWalGeneration(again, hdr)) return 'more'; // moved again meanwhile: look once more
    const scan = scanFrames(body, hdr, 1, hdr.checksum);
    // Header written, no commit yet; the old WAL's tail was found empty above: idle.
    if (scan.lastCommitIndex < 1) return 'idle';
    await this.sendFrames(hdr, hdr.raw, 1, scan.frames, scan.lastCommitIndex, scan.lastCommitChecksum);
    return scan.lastCommitIndex >= idx.mxFrame || scan.stop !== 'end' || body.length < this.opts.maxBatchBytes ? 'shipped' : 'more';
  }

  /**
   * The WAL is long and everything is shipped: let the app's database catch up.
   * Under the write lock (nothing can commit) we capture any frame committed since
   * the last poll, then release R, run a PASSIVE checkpoint and re-begin R, then
   * release the lock. The WAL may restart right after, but every committed frame of
   * the old WAL is already in our hands, so the restart is gapless.
   */
  private async checkpointCycle(): Promise<Pass> {
    const t = this.track!;
    // A checkpoint copies the newest version of each page from the WAL into the db file
    // without verifying frames: one of a damaged WAL would write the damage into the db
    // file and, once the WAL restarts, erase the evidence. So the frames are checked first,
    // outside the write lock (frames up to mxFrame do not change until the WAL restarts,
    // and R pins it); those committed since are scanned under the lock below. A damaged WAL
    // is not checkpointed by us again (R stays where it is, which bounds the app's own
    // checkpoints too) until the copy is replaced; the frames that verified still ship.
    const pre = readWalIndexHeader(this.shmPath);
    if (pre && t.hdr && pre.salt1 === t.hdr.salt1 && pre.salt2 === t.hdr.salt2) {
      const chain = inspectWalChain(this.dbPath, this.rel, { committed: { salt1: pre.salt1, salt2: pre.salt2, frames: pre.mxFrame }, known: this.lastShipped });
      if (chain.problems.length > 0) {
        this.damaged = chain.problems;
        this.log.error({ problems: chain.problems }, 'the WAL is damaged: no checkpoint of it (the copy must be replaced)');
        return 'shipped';
      }
    }
    let captured: { first: number; frames: Buffer; last: number; checksum: WalChecksum } | null = null;
    let ok = true;
    await this.withWriteLock(() => {
      const idx = readWalIndexHeader(this.shmPath);
      if (!idx || !t.hdr || idx.salt1 !== t.hdr.salt1 || idx.salt2 !== t.hdr.salt2 || idx.mxFrame < t.lastFrame) {
        ok = false; // a restart we have not processed: the next poll handles it
        return;
      }
      this.indexSeen = idx;
      if (idx.mxFrame > t.lastFrame) {
        const fsz = frameSize(t.hdr.pageSize);
        const data = this.readWalSync(frameOffset(t.hdr.pageSize, t.lastFrame + 1), (idx.mxFrame - t.lastFrame) * fsz);
        const scan = scanFrames(data, t.hdr, t.lastFrame + 1, t.checksum);
        if (scan.lastCommitIndex !== idx.mxFrame) throw new GapError(`${this.walPath}: frames up to ${idx.mxFrame} do not verify`);
        captured = { first: t.lastFrame + 1, frames: Buffer.from(scan.frames), last: scan.lastCommitIndex, checksum: scan.lastCommitChecksum };
      }
      if (!pre || pre.salt1 !== idx.salt1 || pre.salt2 !== idx.salt2) {
        ok = false; // the WAL restarted since it was checked: the next poll handles it
        return;
      }
      const R = this.R!;
      if (R.inTransaction) R.exec('ROLLBACK');
      this.lastCkpt = R.pragma('wal_checkpoint(PASSIVE)');
      this.beginRead();
    });
    const cp = captured as { first: number; last: number } | null;
    this.log.debug({ ok, lastFrame: t.lastFrame, captured: cp ? [cp.first, cp.last] : null, ckpt: this.lastCkpt }, 'checkpoint cycle');
    if (!ok) return 'more';
    this.lastCycleLsn = lsnOf(t.walSeq, cp ? cp.last : t.lastFrame);
    const c = captured as { first: number; frames: Buffer; last: number; checksum: WalChecksum } | null;
    // A failure here makes the loop start a new generation.
    // Captured under the write lock up to mxFrame: every commit made so far.
    if (c) await this.sendFrames(t.hdr!, undefined, c.first, c.frames, c.last, c.checksum);
    return 'shipped';
  }
}
