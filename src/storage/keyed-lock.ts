import { background } from '../shared/background.ts';

/**
 * Serializes async work per key (a site): control commands and replica writes on one
 * volume never interleave, so a promotion waits for an append in progress and every
 * later append sees the new epoch.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    background(
      tail.then(() => {
        if (this.tails.get(key) === tail) this.tails.delete(key);
      }),
    );
    return next;
  }
}
