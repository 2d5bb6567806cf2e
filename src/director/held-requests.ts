import type { RouteTable } from '../shared/contracts.ts';

/**
 * Requests the director holds instead of failing them (DESIGN, "Rules that never
 * break"): while a site has no primary, and after a connection to an upstream was
 * refused (the request never reached the app, so it is safe to send it again,
 * whatever its method).
 *
 * The queue is bounded in count (holdMaxRequests per site) and each entry in time
 * (its deadline); a request that would exceed either gets 503 + Retry-After from
 * the caller. Entries are released in arrival order, each only when the route
 * has changed in the way its reason waits for.
 */

/** Why a request waits, and so which route releases it. */
export type HoldReason =
  /** The site has no route yet, or its primary is null: any route with a primary releases it. */
  | { kind: 'no-primary' }
  /**
   * `upstream` refused the connection (or broke it) while the route was at `epoch`:
   * a route with a higher epoch or another primary releases it. The same route
   * re-sent (idempotent PUT) does not: the upstream is still the one that failed.
   */
  | { kind: 'upstream-failed'; epoch: number; upstream: string };

export function releases(reason: HoldReason, route: RouteTable | null): boolean {
  if (route === null || route.primary === null) return false;
  if (reason.kind === 'no-primary') return true;
  return route.epoch > reason.epoch || route.primary !== reason.upstream;
}

interface Entry<T> {
  item: T;
  reason: HoldReason;
  timer: NodeJS.Timeout;
  prev: Entry<T> | null;
  next: Entry<T> | null;
}

/** Opaque handle to a held entry, to take it out early (client gone). */
export type HoldTicket = object;

export class HoldQueue<T> {
  private head: Entry<T> | null = null;
  private tail: Entry<T> | null = null;
  private count = 0;

  /** @param max most entries held at once (config.director.holdMaxRequests). */
  constructor(private readonly max: number) {}

  get size(): number {
    return this.count;
  }

  /**
   * Holds `item` until released or until `timeoutMs` has passed, then calls
   * `onTimeout(item)` (the entry is already removed). Returns null, holding
   * nothing, when the queue is full.
   */
  add(item: T, reason: HoldReason, timeoutMs: number, onTimeout: (item: T) => void): HoldTicket | null {
    if (this.count >= this.max) return null;
    const entry: Entry<T> = { item, reason, timer: undefined as unknown as NodeJS.Timeout, prev: this.tail, next: null };
    entry.timer = setTimeout(
      () => {
        this.unlink(entry);
        onTimeout(item);
      },
      Math.max(0, timeoutMs),
    );
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
    this.count++;
    return entry;
  }

  /** Takes an entry out without calling anything (its client went away). Safe to call twice. */
  remove(ticket: HoldTicket): void {
    const entry = ticket as Entry<T>;
    clearTimeout(entry.timer);
    this.unlink(entry);
  }

  /** Removes and returns, in arrival order, every entry that `route` releases. */
  release(route: RouteTable | null): T[] {
    const out: T[] = [];
    for (let e = this.head; e !== null;) {
      const next = e.next;
      if (releases(e.reason, route)) {
        clearTimeout(e.timer);
        this.unlink(e);
        out.push(e.item);
      }
      e = next;
    }
    return out;
  }

  /** Removes and returns everything (shutdown). */
  drain(): T[] {
    const out: T[] = [];
    for (let e = this.head; e !== null; e = e.next) {
      clearTimeout(e.timer);
      out.push(e.item);
    }
    this.head = this.tail = null;
    this.count = 0;
    return out;
  }

  private unlink(e: Entry<T>): void {
    if (e.prev === null && this.head !== e) return; // already out
    if (e.prev) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = e.next = null;
    this.count--;
  }
}
