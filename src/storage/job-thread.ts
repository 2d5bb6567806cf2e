import { Worker } from 'node:worker_threads';

/** A job handed to the thread and not answered yet. */
export interface PendingJob {
  id: number;
}

/**
 * One worker thread that runs jobs by id: started on first use, and again on the next
 * job after it is gone. It keeps the process alive only while a job is pending (a
 * storage processor that stops does not wait for an idle thread). What becomes of the
 * jobs of a thread that failed or exited is the subclass's (`gone`): the hashing thread
 * does them on the event loop, the checking thread sends them to a new thread once.
 */
export abstract class JobThread<P extends PendingJob, M extends { id: number }> {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, P>();
  private next = 1;

  /** @param what the thread, as messages name it ("the checking thread"). */
  constructor(private readonly what: string) {}

  protected nextId(): number {
    return this.next++;
  }

  /** Hands `p` to the thread (`message` is what it receives). Throws when no thread can start. */
  protected post(p: P, message: unknown): void {
    const w = this.started();
    this.pending.set(p.id, p);
    w.ref();
    w.postMessage(message);
  }

  /** The thread answered `p`. */
  protected abstract answered(p: P, m: M): void;

  /** The thread failed or exited with `left` unanswered (they are no longer pending). */
  protected abstract gone(left: P[], why: string): void;

  protected abstract start(): Worker;

  private started(): Worker {
    if (this.worker) return this.worker;
    const w = this.start();
    w.unref();
    w.on('message', (m: M) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      if (p) this.answered(p, m);
    });
    let over = false;
    const end = (why: string): void => {
      if (over) return;
      over = true;
      if (this.worker === w) this.worker = null;
      const left = [...this.pending.values()];
      this.pending.clear();
      this.gone(left, why);
    };
    w.on('error', (e) => end(`${this.what} failed: ${e.message}`));
    w.on('exit', (code) => end(`${this.what} exited (${code})`));
    this.worker = w;
    return w;
  }
}
