import { UnderstudyError } from '../shared/errors.ts';
import type { EtcdClient, EtcdOp } from './etcd-client.ts';
import type { StateStore } from './state-store.ts';

/**
 * The controller's state kept in etcd: a mirrored StateStore (rows in memory, every
 * change in an outbox, state-store.ts) written to etcd in order, each row one key
 * `<prefix>/state/<table>/<key>` holding the row as JSON.
 *
 * - **Only the leader writes, and etcd checks it.** Every batch is one transaction
 *   that succeeds only while the leader key still has the create revision of this
 *   term (the fencing token, leader-lease.ts). A controller that lost its term, even
 *   one paused past its lease that does not know it yet, has its writes refused by
 *   etcd itself: `flush()` then throws US_STALE_LEADER and every later one too.
 * - **In order, exactly once.** Batches go one at a time, oldest change first; a batch
 *   leaves the outbox only once etcd has committed it. A batch that etcd did not answer
 *   is sent again (a put of the same row twice is harmless).
 * - **Durable before acting.** The store's `flush()` resolves once every change made
 *   before it is committed in etcd; the runbooks await it between journaling a step's
 *   begin and running the step (runbook-journal.ts), as the embedded store's fsync did.
 * - **A new leader starts from etcd** (`load()`), not from its own view; a follower
 *   keeps its view with `follow()` (read whole, then etcd's watch) and serves the read
 *   API from it. `refresh()` reads whole again only when etcd's revision moved.
 */
export interface EtcdStateOptions {
  client: EtcdClient;
  /** The key prefix (`controller.state.etcd.prefix`), without a trailing slash. */
  prefix: string;
  /** The leader key and the create revision it had when this term began; absent for a follower's read-only view. */
  guard?: { leaderKey: string; token: number };
  /** Called once when etcd refuses a write because the leader key changed: this term is over. */
  onRefused?: () => void;
  onError?: (e: Error) => void;
}

/** Ops per transaction: etcd refuses more than 128 by default (--max-txn-ops). */
const BATCH_OPS = 100;
/** Bytes of values per transaction: well under etcd's default request limit (1.5 MiB). */
const BATCH_BYTES = 512 * 1024;
/** How soon a batch that failed (etcd did not answer) is sent again. */
const RETRY_MS = 250;

export class EtcdState {
  private sending: Promise<void> | null = null;
  private refused: UnderstudyError | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private lastRevision = 0;
  private closed = false;

  constructor(
    private readonly store: StateStore,
    private readonly o: EtcdStateOptions,
  ) {
    if (!store.mirrored) throw new UnderstudyError('US_INTERNAL', 'etcd state needs a mirrored store');
  }

  private get statePrefix(): string {
    return `${this.o.prefix}/state/`;
  }

  /** The table and row key an etcd key names (`<prefix>/state/<table>/<key>`), or null for another key. */
  private rowOf(key: string): { table: string; key: string } | null {
    const rest = key.slice(this.statePrefix.length);
    const slash = rest.indexOf('/');
    return slash > 0 ? { table: rest.slice(0, slash), key: rest.slice(slash + 1) } : null;
  }

  /** Reads every row from etcd into the store (replacing what it held). Returns etcd's revision then. */
  async load(): Promise<number> {
    const { kvs, revision } = await this.o.client.range(this.statePrefix);
    const rows: { table: string; row: Record<string, unknown> }[] = [];
    for (const kv of kvs) {
      const at = this.rowOf(kv.key);
      if (at) rows.push({ table: at.table, row: JSON.parse(kv.value) as Record<string, unknown> });
    }
    this.store.replaceAll(rows);
    this.lastRevision = revision;
    return revision;
  }

  /**
   * A follower's view, kept until `signal` aborts: read whole, then every change as etcd's
   * watch reports it; read whole again whenever the watch ends (a member lost, history
   * compacted), after `retryMs`.
   */
  async follow(signal: AbortSignal, retryMs: number): Promise<void> {
    while (!signal.aborted) {
      try {
        const rev = await this.load();
        await this.o.client.watch(
          this.statePrefix,
          rev + 1,
          (events) => {
            const changes: { table: string; key: string; row: Record<string, unknown> | null }[] = [];
            for (const e of events) {
              const at = this.rowOf(e.kv.key);
              if (at) changes.push({ ...at, row: e.type === 'delete' ? null : (JSON.parse(e.kv.value) as Record<string, unknown>) });
            }
            this.store.applyMirrored(changes);
            this.lastRevision = Math.max(this.lastRevision, ...events.map((e) => e.kv.modRevision));
          },
          signal,
        );
      } catch {
        // etcd not answering: the view stays as it was (the status says etcd does not answer)
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  /** A follower's view: read again when anything in etcd changed since the last read. */
  async refresh(): Promise<boolean> {
    const rev = await this.o.client.revision();
    if (rev === this.lastRevision) return false;
    await this.load();
    return true;
  }

  /** Starts sending the store's changes to etcd as they are made (the leader's term). */
  start(): void {
    if (!this.o.guard) throw new UnderstudyError('US_INTERNAL', 'a follower view does not write to etcd');
    this.store.attachMirror({ onChange: () => this.kick(), flush: () => this.flush() });
    this.kick();
  }

  /** Stops sending (the term ended); what was not sent stays unsent. */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.store.attachMirror(null);
  }

  /** Resolves once every change made before the call is committed in etcd (see the class comment). */
  async flush(): Promise<void> {
    const upTo = this.store.lastChangeSeq();
    for (;;) {
      if (this.refused) throw this.refused;
      if (this.closed) throw new UnderstudyError('US_STALE_LEADER', 'this controller no longer leads: its state is no longer written to etcd');
      const next = this.store.pendingChanges(1)[0];
      if (next === undefined || next.seq > upTo) return;
      await this.sendOnce();
    }
  }

  private kick(): void {
    if (this.closed || this.refused || this.sending) return;
    this.sendOnce().then(
      () => {
        if (this.store.pendingChanges(1).length > 0) this.kick();
      },
      (e: Error) => {
        if (this.refused || this.closed) return;
        this.o.onError?.(e);
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = null;
          this.kick();
        }, RETRY_MS);
      },
    );
  }

  /** One batch, oldest changes first; concurrent callers share the batch in flight. */
  private sendOnce(): Promise<void> {
    this.sending ??= this.sendBatch().finally(() => {
      this.sending = null;
    });
    return this.sending;
  }

  private async sendBatch(): Promise<void> {
    const guard = this.o.guard!;
    const changes = this.store.pendingChanges(BATCH_OPS);
    if (changes.length === 0) return;
    // One op per key: etcd refuses a key twice in one transaction, and the transaction is
    // atomic, so a row's last change in the batch is all that matters.
    const ops = new Map<string, EtcdOp>();
    let bytes = 0;
    let last = 0;
    for (const c of changes) {
      const key = `${this.statePrefix}${c.table}/${c.key}`;
      const value = c.row === null ? null : JSON.stringify(c.row);
      bytes += key.length + (value?.length ?? 0);
      if (ops.size > 0 && bytes > BATCH_BYTES) break;
      ops.delete(key);
      ops.set(key, value === null ? { delete: { key } } : { put: { key, value } });
      last = c.seq;
    }
    const r = await this.o.client.txn([{ key: guard.leaderKey, target: 'CREATE', createRevision: guard.token }], [...ops.values()]);
    if (!r.succeeded) {
      this.refused = new UnderstudyError(
        'US_STALE_LEADER',
        `etcd refused this controller's state write: the leader key ${guard.leaderKey} is no longer the one of its term (token ${guard.token}); another controller leads`,
      );
      this.o.onRefused?.();
      throw this.refused;
    }
    this.store.changesTaken(last);
    this.lastRevision = r.revision;
  }
}
