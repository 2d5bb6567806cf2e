/**
 * Callers that ask for the same key while a run of it is under way share that run
 * (its result or its error) instead of starting another; once it settles, the next
 * call starts a new one. What the controller uses so that sites starting together
 * power a shared host on once, and run one boot pass.
 */
export class SingleFlight<K> {
  private readonly running = new Map<K, Promise<unknown>>();

  run<T>(key: K, fn: () => Promise<T>): Promise<T> {
    const pending = this.running.get(key);
    if (pending) return pending as Promise<T>;
    const p = (async () => fn())().finally(() => this.running.delete(key));
    this.running.set(key, p);
    return p;
  }
}
