/**
 * The sync-mode barrier of one DbShipper: "resolve once the replica holds, on its
 * disk, every transaction that was committed in the source database before I asked".
 *
 * Two ways to release a waiter; either is enough (the argument is at DbShipper.run()):
 *
 * 1. By pass number. A pass (one look at the WAL file and the shipping of what it
 *    found, or one new generation) takes its number with `begin()` right before its
 *    first read of the files. A waiter registered after pass n took its number needs
 *    pass n+1: a pass that reads the WAL file after the waiter arrived, hence after
 *    the caller's commit. The pass reports whether it caught up, i.e. shipped, and had
 *    acknowledged, every commit the file held when it read it (`done(pass)`); only
 *    then are its waiters released. A pass that did only part of the work (a WAL
 *    switch, a batch cut at maxBatchBytes) releases nobody by number.
 *
 * 2. By WAL position. A waiter may bring the position it must see on the replica:
 *    the WAL-index header (salts + mxFrame) read when it registered, after the
 *    caller's commit. The shipper reports every WAL position the replica acknowledged
 *    (`acked`): the replica's database is then the source's as of frame `frame` of the
 *    WAL with those salts. A waiter whose position has the same salts and a frame at or
 *    below it is released at once — whichever pass brought the ack, including the one
 *    in flight when it registered (it "joins" that pass when the pass read far
 *    enough). Salts that differ never release anyone this way; the waiter then waits
 *    for rule 1 or for the ack of a pass that follows the WAL to those salts.
 *    `invalidate()` forgets the acknowledged position (a new generation replaces the
 *    replica's files; until its image is installed, only rule 1 applies).
 *
 * Group commit: waiters with the same pass number and position share one promise.
 *
 * There is no timeout here: callers race `wait()` against their own deadline. A
 * stopped shipper rejects every waiter (`failAll`).
 */
interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** A point in the source's commit history: the WAL generation (salts) and a commit frame in it. */
export interface WalPosition {
  salt1: number;
  salt2: number;
  frame: number;
}

interface Entry {
  need: number;
  pos: WalPosition | null;
  d: Deferred;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A waiter whose caller gave up (timeout) must not surface as an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** True when the replica at `acked` holds the source's state at `want` (same WAL, not behind). */
export function covers(acked: WalPosition | null, want: WalPosition): boolean {
  return acked !== null && acked.salt1 === want.salt1 && acked.salt2 === want.salt2 && acked.frame >= want.frame;
}

export class CatchUpBarrier {
  /** Number of the last pass started (0 = none yet). */
  private started = 0;
  /** Waiters by pass number and position. */
  private readonly waiting = new Map<string, Entry>();
  /** Last WAL position the replica acknowledged (null: none, or invalidated). */
  private ackedPos: WalPosition | null = null;
  private failure: Error | null = null;

  /** Numbers a pass; call right before its first read of the WAL (or its snapshot lock). */
  begin(): number {
    return ++this.started;
  }

  /** Pass `pass` caught up: everything committed when it began is acknowledged. */
  done(pass: number): void {
    for (const [key, e] of this.waiting) {
      if (e.need > pass) continue;
      this.waiting.delete(key);
      e.d.resolve();
    }
  }

  /**
   * The replica acknowledged (on its disk) the source's state as of commit frame
   * `pos.frame` of the WAL with `pos`'s salts. Call only after the acknowledgment.
   */
  acked(pos: WalPosition): void {
    this.ackedPos = { ...pos };
    for (const [key, e] of this.waiting) {
      if (e.pos === null || !covers(this.ackedPos, e.pos)) continue;
      this.waiting.delete(key);
      e.d.resolve();
    }
  }

  /** Forgets the acknowledged position: until the next `acked`, only pass numbers release. */
  invalidate(): void {
    this.ackedPos = null;
  }

  /** True when someone waits for a pass: the shipper must not sleep. */
  get pending(): boolean {
    return this.waiting.size > 0;
  }

  /**
   * Resolves after the next pass that starts from now on has caught up, or once the
   * replica acknowledged `pos` (read after the caller's commit; null: unknown).
   */
  wait(pos: WalPosition | null = null): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (pos !== null && covers(this.ackedPos, pos)) return Promise.resolve();
    const need = this.started + 1;
    const key = pos === null ? `${need}` : `${need}:${pos.salt1}:${pos.salt2}:${pos.frame}`;
    let e = this.waiting.get(key);
    if (e === undefined) {
      e = { need, pos: pos === null ? null : { ...pos }, d: deferred() };
      this.waiting.set(key, e);
    }
    return e.d.promise;
  }

  /** The shipper stopped: every waiter, present and future, is rejected with `err`. */
  failAll(err: Error): void {
    this.failure = err;
    this.ackedPos = null;
    for (const e of this.waiting.values()) e.d.reject(err);
    this.waiting.clear();
  }
}
