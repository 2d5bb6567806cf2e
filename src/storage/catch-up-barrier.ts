/**
 * The sync-mode barrier of one DbShipper: "resolve once the replica holds, on its
 * disk, every transaction that was committed in the source database before I asked".
 *
 * It counts the shipper's passes (one pass = one look at the WAL file and the
 * shipping of what it found, or one new generation). A pass takes its number with
 * `begin()` right before its first read of the files (synchronously before issuing
 * it). A waiter registered after pass n took its number needs pass n+1: a pass that
 * reads the WAL file after the waiter arrived, hence after the caller's commit. The pass
 * reports whether it caught up, i.e. shipped, and had acknowledged, every commit the
 * file held when it read it (`done(pass)`); only then are its waiters released. A pass
 * that did only part of the work (a WAL switch, a batch cut at maxBatchBytes) releases
 * nobody: the next one goes on at once.
 *
 * Group commit: every waiter that arrives during one pass shares the next pass, so N
 * concurrent confirmations cost one read of the WAL and one ship/ack round trip, and
 * they share one promise (no per-waiter bookkeeping on the hot path).
 *
 * There is no timeout here: callers race `wait()` against their own deadline. A
 * stopped shipper rejects every waiter (`failAll`).
 */
interface Deferred { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void }

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  // A waiter whose caller gave up (timeout) must not surface as an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export class CatchUpBarrier {
  /** Number of the last pass started (0 = none yet). */
  private started = 0;
  /** Waiters by the pass number they need, in increasing order. */
  private readonly waiting = new Map<number, Deferred>();
  private failure: Error | null = null;

  /** Numbers a pass; call right before its first read of the WAL (or its snapshot lock). */
  begin(): number {
    return ++this.started;
  }

  /** Pass `pass` caught up: everything committed when it began is acknowledged. */
  done(pass: number): void {
    for (const [need, d] of this.waiting) {
      if (need > pass) break;
      this.waiting.delete(need);
      d.resolve();
    }
  }

  /** True when someone waits for a pass: the shipper must not sleep. */
  get pending(): boolean {
    return this.waiting.size > 0;
  }

  /** Resolves after the next pass that starts from now on has caught up. */
  wait(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const need = this.started + 1;
    let d = this.waiting.get(need);
    if (d === undefined) {
      d = deferred();
      this.waiting.set(need, d);
    }
    return d.promise;
  }

  /** The shipper stopped: every waiter, present and future, is rejected with `err`. */
  failAll(err: Error): void {
    this.failure = err;
    for (const d of this.waiting.values()) d.reject(err);
    this.waiting.clear();
  }
}
