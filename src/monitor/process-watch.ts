import { isProcessAlive } from '../power/process-group.ts';

/** How often watched processes are checked (a /proc read per distinct process, cheap). */
export const PROCESS_CHECK_MS = 25;

/**
 * Tells watchers when an embedded host's process dies. One timer for every watcher
 * and one check per distinct pid per round, however many sites run on that host: a
 * thousand sites on two hosts cost two /proc reads every 25 ms, not a thousand
 * timers. A death is told once to each watcher, which is then forgotten; the timer
 * runs only while something is watched and never keeps the process alive.
 */
export class ProcessWatch {
  private readonly watchers = new Map<number, Set<() => void>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly everyMs = PROCESS_CHECK_MS,
    private readonly alive: (pid: number) => boolean = isProcessAlive,
  ) {}

  /** Calls `onGone` once when `pid` is no longer alive; returns what stops the watch. */
  watch(pid: number, onGone: () => void): () => void {
    let set = this.watchers.get(pid);
    if (set === undefined) {
      set = new Set();
      this.watchers.set(pid, set);
    }
    set.add(onGone);
    if (this.timer === null) {
      this.timer = setInterval(() => this.round(), this.everyMs);
      this.timer.unref();
    }
    return () => this.unwatch(pid, onGone);
  }

  /** Distinct pids watched right now. */
  get size(): number {
    return this.watchers.size;
  }

  private unwatch(pid: number, onGone: () => void): void {
    const set = this.watchers.get(pid);
    if (set === undefined) return;
    set.delete(onGone);
    if (set.size === 0) this.watchers.delete(pid);
    if (this.watchers.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private round(): void {
    for (const [pid, set] of [...this.watchers]) {
      if (this.alive(pid)) continue;
      this.watchers.delete(pid);
      for (const onGone of set) onGone();
    }
    if (this.watchers.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

/** The process's one watch, shared by every site monitor. */
export const processWatch = new ProcessWatch();
