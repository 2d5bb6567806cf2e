import type { NotifyTarget, UnderstudyConfig } from '../config/types.ts';
import type { EventRecord, StateStore } from '../state/state-store.ts';
import { deliver } from './deliver.ts';

/** How often queues are looked at when no event wakes them. */
const TICK_MS = 250;
/** Delivered and given-up rows are kept this long for `GET /v1/notify`, then pruned. */
const KEEP_MS = 7 * 24 * 3600_000;

/** Where the notifier says what went wrong (pino's shape); never a header value. */
export interface NotifierLog {
  warn: (o: object, msg: string) => void;
  error: (o: object, msg: string) => void;
}

export interface TargetStats {
  target: string;
  /** Counted by this process since it started (Prometheus counters). */
  delivered: number;
  failedAttempts: number;
  givenUp: number;
  /** What the durable queue holds now. */
  pending: number;
  /** The oldest undelivered notification has failed `retry.alertAfter` times or more. */
  failing: boolean;
  lastError: string | null;
}

/**
 * Delivers events to the `notify:` targets, at least once.
 *
 * The queue is durable and lives in the state store: each target has a cursor over
 * the event log, and every matching event after it is queued (rows and cursor in one
 * transaction). A row leaves the queue only once its delivery is confirmed, so a
 * controller killed at any point delivers, after its restart, everything it had not
 * confirmed — possibly twice (receivers deduplicate on `x-understudy-event-id`).
 *
 * Each target gets its events in order, one at a time; a failed delivery is tried again
 * after a wait that doubles from `retry.min` to `retry.max` (with ±20 % jitter), and the
 * ones behind it wait. After `retry.alertAfter` failed attempts the notifier raises a
 * `notify-failing` event (delivered to the other targets, never to the failing one),
 * and `notify-recovered` once it delivers again; a notification still undelivered
 * `retry.giveUpAfter` after its event is given up (`notify-given-up`).
 *
 * Nothing here runs inside a runbook: events are only read from the log, on a timer
 * and when one is written, and delivery is asynchronous with a timeout.
 */
export class Notifier {
  private readonly targets: NotifyTarget[];
  private readonly patterns = new Map<string, RegExp[]>();
  private readonly counters = new Map<string, { delivered: number; failedAttempts: number; givenUp: number; lastError: string | null }>();
  private readonly pumping = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private offEvent: (() => void) | null = null;
  private stopped = false;
  private wakeQueued = false;

  constructor(
    private readonly config: UnderstudyConfig,
    private readonly store: StateStore,
    private readonly log: NotifierLog,
    private readonly random: () => number = Math.random,
  ) {
    this.targets = Object.values(config.notify ?? {});
    for (const t of this.targets) {
      this.patterns.set(t.name, t.events.map(globToRegExp));
      this.counters.set(t.name, { delivered: 0, failedAttempts: 0, givenUp: 0, lastError: null });
    }
  }

  start(): void {
    if (this.targets.length === 0) return;
    // A target seen for the first time starts with the events written from now on.
    const last = this.store.lastEventId();
    for (const t of this.targets) if (this.store.notifyCursor(t.name) === undefined) this.store.enqueueNotifications(t.name, [], last);
    this.store.pruneNotifications(Date.now() - KEEP_MS);
    this.offEvent = this.store.onEvent(() => this.wakeSoon());
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.pruneTimer = setInterval(() => this.store.pruneNotifications(Date.now() - KEEP_MS), 3600_000);
    this.pruneTimer.unref();
    this.tick();
  }

  /** Stops looking at the queues; deliveries under way finish (or time out) on their own. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.offEvent?.();
  }

  stats(): TargetStats[] {
    const counts = new Map(this.store.notificationCounts().map((c) => [c.target, c]));
    return this.targets.map((t) => {
      const c = this.counters.get(t.name)!;
      const head = this.store.nextNotification(t.name);
      return {
        target: t.name,
        delivered: c.delivered,
        failedAttempts: c.failedAttempts,
        givenUp: c.givenUp,
        pending: counts.get(t.name)?.pending ?? 0,
        failing: !!head && head.row.attempts >= t.retry.alertAfter,
        lastError: head?.row.lastError ?? c.lastError,
      };
    });
  }

  /** Whether `target` wants event `e` (by kind pattern and site; never its own notify-* events). */
  wants(target: NotifyTarget, e: EventRecord): boolean {
    if (e.kind.startsWith('notify-') && e.data.target === target.name) return false;
    if (target.sites && (e.site === null || !target.sites.includes(e.site))) return false;
    return this.patterns.get(target.name)!.some((re) => re.test(e.kind));
  }

  /** Defers the look at the queues to after the current step: addEvent must stay cheap. */
  private wakeSoon(): void {
    if (this.wakeQueued || this.stopped) return;
    this.wakeQueued = true;
    setImmediate(() => {
      this.wakeQueued = false;
      this.tick();
    });
  }

  private tick(): void {
    if (this.stopped) return;
    for (const t of this.targets) {
      try {
        this.enqueue(t);
      } catch (e) {
        this.log.error({ target: t.name, err: (e as Error).message }, 'notify: could not queue events');
      }
      if (!this.pumping.has(t.name)) {
        this.pumping.add(t.name);
        void this.pump(t)
          .catch((e: Error) => this.log.error({ target: t.name, err: e.message }, 'notify: delivery loop failed'))
          .finally(() => this.pumping.delete(t.name));
      }
    }
  }

  private enqueue(t: NotifyTarget): void {
    let cursor = this.store.notifyCursor(t.name) ?? 0;
    while (true) {
      const page = this.store.listEvents({ afterId: cursor, limit: 500 });
      if (page.length === 0) return;
      cursor = page[page.length - 1]!.id;
      this.store.enqueueNotifications(
        t.name,
        page.filter((e) => this.wants(t, e)).map((e) => e.id),
        cursor,
      );
      if (page.length < 500) return;
    }
  }

  /** Delivers `t`'s due notifications in order until one fails or none is due. */
  private async pump(t: NotifyTarget): Promise<void> {
    const c = this.counters.get(t.name)!;
    while (!this.stopped) {
      const next = this.store.nextNotification(t.name);
      if (!next || next.row.nextAt > Date.now()) return;
      const { row, event } = next;
      try {
        await deliver(t, { ...event, target: t.name, attempt: row.attempts + 1 }, this.config.baseDir);
      } catch (e) {
        const error = (e as Error).message;
        const attempts = row.attempts + 1;
        const now = Date.now();
        const giveUp = now - event.at >= t.retry.giveUpAfterMs;
        const wait = Math.min(t.retry.maxMs, t.retry.minMs * 2 ** Math.min(attempts - 1, 30)) * (0.8 + 0.4 * this.random());
        this.store.notificationAttempt(row.id, { delivered: false, nextAt: now + Math.round(wait), error, giveUp });
        c.failedAttempts++;
        c.lastError = error;
        this.log.warn(
          { target: t.name, event: event.id, attempt: attempts, err: error, retryInMs: giveUp ? null : Math.round(wait) },
          'notify: delivery failed',
        );
        if (giveUp) {
          c.givenUp++;
          this.store.addEvent({
            site: event.site,
            host: null,
            kind: 'notify-given-up',
            message: `notification of event #${event.id} (${event.kind}) to ${t.name} given up after ${attempts} attempts over ${Math.round((now - event.at) / 1000)} s: ${error}`,
            data: { target: t.name, event: event.id, attempts, error },
          });
          continue;
        }
        if (attempts === t.retry.alertAfter) {
          this.store.addEvent({
            site: null,
            host: null,
            kind: 'notify-failing',
            message: `notifications to ${t.name} keep failing (${attempts} attempts for event #${event.id}, ${error}); they are kept and retried every ≤${Math.round(t.retry.maxMs / 1000)} s`,
            data: { target: t.name, event: event.id, attempts, error },
          });
        }
        return;
      }
      this.store.notificationAttempt(row.id, { delivered: true });
      c.delivered++;
      c.lastError = null;
      if (row.attempts >= t.retry.alertAfter) {
        this.store.addEvent({
          site: null,
          host: null,
          kind: 'notify-recovered',
          message: `notifications to ${t.name} are delivered again (event #${event.id} after ${row.attempts + 1} attempts)`,
          data: { target: t.name, event: event.id, attempts: row.attempts + 1 },
        });
      }
    }
  }
}

/** `failover-*` → /^failover-.*$/ (only `*` is special). */
export function globToRegExp(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}
