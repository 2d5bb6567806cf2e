import path from 'node:path';
import type { Logger } from 'pino';
import type { DatabaseStatus, ReplicationState, VolumeStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { DbShipper, type ShippedState } from './db-shipper.ts';
import type { WalEnd } from './wal-chain-check.ts';
import { FileShipper } from './file-sync.ts';
import { ReplicaClient } from './replica-protocol.ts';
import { SnapshotShipper } from './snapshot-shipper.ts';
import { DatabaseFinder, isCompanionName, readDatabaseHeader, type DatabaseMode } from './sqlite-file.ts';
import { settleWalSwitch, switchedToWalHere } from './wal-switch.ts';
import { readWalIndexHeader } from './wal-index.ts';

/**
 * Replication of one primary volume to one replica: a FileShipper for plain files and
 * one shipper per database. Databases are found by their header, whatever their name
 * (sqlite-file.ts), at start, after every file scan and at every sync barrier, and each
 * is shipped by the method its journal mode allows:
 *  - WAL mode: verbatim WAL frames (DbShipper) — except a database this process switched
 *    to WAL mode itself and the app has not written to yet (wal-switch.ts: the app must
 *    remain free to put it back), which goes by snapshots until the app writes in WAL mode;
 *  - rollback-journal mode: consistent snapshots (SnapshotShipper);
 *  - empty (created, not written yet): nothing to ship until SQLite writes it;
 *  - not an SQLite database although named like one: not replicated — reported as
 *    unprotected in `status().databases`, never copied as a plain file.
 * The method follows the mode: a database whose mode changes gets the other shipper
 * (the new one starts with a whole image). `status().databases` lists every database
 * with its mode, method, state and lag; `lagMs` is the worst of them (and of the files)
 * now, `lagPeakMs` the worst of the last 2 s.
 *
 * Confirmation API (for sync mode): `position()` reads every database's WAL now and
 * returns `{ [db]: lsn }`; `waitConfirmed(pos)` resolves once the replica has
 * acknowledged at least that much of every database. Sync mode uses `catchUp()`,
 * which reads the WAL files after the call instead of trusting a remembered position
 * (see DbShipper's `run()` and SnapshotShipper for why it cannot let a committed write
 * slip); a database shipped by snapshots is covered by a snapshot taken after the call.
 */
export type VolumePosition = Record<string, number>;

export interface ReplicationTuning {
  /** Idle WAL poll interval. @default 10 */
  walPollMs?: number;
  /** WAL frames after which the shipper checkpoints once all is shipped. @default 1000 */
  checkpointFrames?: number;
  /** Interval of the full file scan. @default 1000 */
  fileScanMs?: number;
  /** How long a database snapshot may wait for SQLite's shared lock before the database counts as unprotected. @default 10000 */
  snapshotLockWaitMs?: number;
}

export interface VolumeShipperOptions {
  site: string;
  volumeDir: string;
  /** Name of this storage system (sent in hello). */
  from: string;
  to: { name: string; url: string };
  epochOf: () => number;
  logger: Logger;
  tuning?: ReplicationTuning;
  /**
   * Only the volume paths this accepts are shipped (databases and plain files), and
   * only those are compared with (or deleted from) the copy: a reader copy gets the
   * site's `volume.readonly` portion (reader-portion.ts). @default everything
   */
  include?: (rel: string) => boolean;
  /** Which protocol channel of the destination (ReplicaClient.channel). @default 'replica' */
  channel?: 'replica' | 'reader';
  /** The position of each database the replica confirmed in an earlier run (live-copy-check.ts). */
  knownEnd?: (rel: string) => WalEnd | null;
}

/** A replica that holds nothing new is asked this often whether it still holds what it was sent (DbShipper `held`). */
const REPLICA_HEARTBEAT_MS = 1000;

interface Waiter {
  pos: VolumePosition;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

type DatabaseShipper = DbShipper | SnapshotShipper;
type Method = DatabaseStatus['method'];

function methodOf(s: DatabaseShipper): Method {
  return s instanceof SnapshotShipper ? 'snapshots' : 'wal-frames';
}

/** A database found in the volume: its mode at the last look, when it was found, why it is shipped as it is. */
interface Found {
  mode: DatabaseMode;
  since: number;
  switchedToWal: boolean;
  revertedByApp: boolean;
}

export class VolumeShipper {
  readonly to: { name: string; url: string };
  private readonly client: ReplicaClient;
  private readonly log: Logger;
  private readonly dbs = new Map<string, DatabaseShipper>();
  /** Every database of the volume (within `include`) at the last look. */
  private readonly found = new Map<string, Found>();
  /** Databases whose shipper is being replaced (mode change): the old one is stopping. */
  private readonly replacing = new Map<string, Promise<void>>();
  private readonly finder: DatabaseFinder;
  private files: FileShipper | null = null;
  private stopped = false;
  private boot: Promise<void> | null = null;
  private bootError: string | undefined;
  private waiters: Waiter[] = [];
  /** Resolves when the first hello succeeded (databases are then being shipped). */
  private booted!: Promise<void>;
  private bootedResolve!: () => void;
  private discovery: Promise<void> | null = null;

  constructor(private readonly opts: VolumeShipperOptions) {
    this.to = opts.to;
    this.client = new ReplicaClient(opts.to.url, opts.site, opts.epochOf, undefined, opts.channel ?? 'replica');
    this.log = opts.logger.child({ site: opts.site, replicaOf: opts.site, to: opts.to.name });
    this.finder = new DatabaseFinder(opts.volumeDir);
    this.booted = new Promise<void>((resolve) => {
      this.bootedResolve = resolve;
    });
  }

  /** Starts in the background: hello is retried with backoff until the replica answers. */
  start(): void {
    this.boot ??= this.bootLoop();
  }

  private async bootLoop(): Promise<void> {
    let backoff = 100;
    while (!this.stopped) {
      try {
        const hello = await this.client.hello(this.opts.from);
        if (this.stopped) return;
        this.bootError = undefined;
        this.files = new FileShipper({
          volumeDir: this.opts.volumeDir,
          client: this.client,
          logger: this.log,
          isDatabase: (rel) => this.isKnownDatabase(rel),
          ...(this.opts.include ? { include: this.opts.include } : {}),
          ...(this.opts.tuning?.fileScanMs ? { scanMs: this.opts.tuning.fileScanMs } : {}),
        });
        this.files.onScan = () => this.discover();
        this.files.start(hello.files);
        this.discover();
        this.bootedResolve();
        this.log.info('replication started');
        return;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (this.bootError !== msg) this.log.warn({ err: msg }, 'replica not reachable yet; retrying');
        this.bootError = msg;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 2000);
      }
    }
  }

  /** A database found at the last look, or one of its companions (the file watcher's filter). */
  private isKnownDatabase(rel: string): boolean {
    return this.found.has(isCompanionName(rel) ? rel.replace(/-(wal|shm|journal)$/, '') : rel);
  }

  /**
   * Finds the volume's databases and gives each the shipper its mode calls for
   * (see the class comment). `full`: every file's header is read again (the periodic
   * scan); otherwise only new and empty files are (the sync barrier's quick look).
   */
  discover(full = true): void {
    if (this.stopped) return;
    const now = Date.now();
    const rels = this.finder.find(full).filter((rel) => !this.opts.include || this.opts.include(rel));
    const present = new Set(rels);
    for (const rel of [...this.found.keys()]) {
      if (present.has(rel)) continue;
      // Removed from the volume: nothing more to ship (the replica keeps its last copy).
      this.found.delete(rel);
      this.replace(rel);
    }
    for (const rel of rels) {
      const abs = path.join(this.opts.volumeDir, rel);
      let f = this.found.get(rel);
      // The quick look (sync barrier, on the write path) leaves alone a database shipped
      // without trouble: its mode cannot change under DbShipper's connections, and
      // SnapshotShipper reports a change itself (onModeChange).
      if (!full && f && this.dbs.get(rel)?.state === 'streaming') continue;
      const mode = readDatabaseHeader(abs).mode;
      if (!f) {
        f = { mode, since: now, switchedToWal: switchedToWalHere(abs), revertedByApp: false };
        this.found.set(rel, f);
        if (mode === 'not-sqlite')
          this.log.warn({ db: rel }, 'named like a database but not an SQLite database: it is not replicated (restore it from a backup or remove it)');
      }
      f.mode = mode;
      if (this.replacing.has(rel)) continue;
      const want = this.methodFor(abs, f);
      const cur = this.dbs.get(rel);
      if ((cur ? methodOf(cur) : 'none') === want) continue;
      if (cur) {
        this.log.info({ db: rel, mode, from: methodOf(cur), to: want }, 'the database changed journal mode; it is shipped the other way from now on');
        this.replace(rel);
        continue;
      }
      if (want !== 'none') this.startDb(rel, want);
    }
  }

  /** How a database in `f.mode` is shipped (see the class comment). */
  private methodFor(abs: string, f: Found): Method {
    switch (f.mode) {
      case 'wal': {
        if (!switchedToWalHere(abs)) return 'wal-frames';
        const idx = readWalIndexHeader(`${abs}-shm`);
        if (idx === null || idx.mxFrame === 0) return 'snapshots'; // the app has not written in WAL mode yet
        settleWalSwitch(abs); // it did: it keeps WAL mode
        return 'wal-frames';
      }
      case 'rollback':
        if (switchedToWalHere(abs)) {
          settleWalSwitch(abs); // the app put it back in rollback-journal mode
          f.revertedByApp = true;
        }
        return 'snapshots';
      default:
        return 'none'; // empty, not an SQLite database, or gone
    }
  }

  private startDb(rel: string, method: Method): void {
    const common = { volumeDir: this.opts.volumeDir, rel, client: this.client, logger: this.log, onAck: () => this.checkWaiters() };
    const s: DatabaseShipper =
      method === 'snapshots'
        ? new SnapshotShipper({
            ...common,
            onModeChange: () => this.discover(true),
            ...(this.opts.tuning?.walPollMs ? { idlePollMs: this.opts.tuning.walPollMs } : {}),
            ...(this.opts.tuning?.snapshotLockWaitMs ? { lockWaitMs: this.opts.tuning.snapshotLockWaitMs } : {}),
          })
        : new DbShipper({
            ...common,
            ...(this.opts.knownEnd ? { knownEnd: () => this.opts.knownEnd!(rel) } : {}),
            ...((this.opts.channel ?? 'replica') === 'replica' ? { heartbeatMs: REPLICA_HEARTBEAT_MS } : {}),
            ...(this.opts.tuning?.walPollMs ? { idlePollMs: this.opts.tuning.walPollMs } : {}),
            ...(this.opts.tuning?.checkpointFrames ? { checkpointFrames: this.opts.tuning.checkpointFrames } : {}),
          });
    this.dbs.set(rel, s);
    s.start();
  }

  /** Stops the shipper of `rel` (if any); once it stopped, the next look starts the right one. */
  private replace(rel: string): void {
    const cur = this.dbs.get(rel);
    if (!cur) return;
    this.dbs.delete(rel);
    this.replacing.set(
      rel,
      cur
        .stop()
        .catch(() => undefined)
        .then(() => {
          this.replacing.delete(rel);
          this.discover(false);
        }),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.bootedResolve(); // catchUp() waiters go on to find the stopped shippers
    await this.boot;
    await Promise.all([this.files?.stop(), ...[...this.dbs.values()].map((d) => d.stop()), ...this.replacing.values()]);
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(
        new UnderstudyError(
          'US_REPLICATION_STOPPED',
          `replication of ${this.opts.site} to ${this.to.name} stopped (promotion, new replica or shutdown): it starts again by itself; understudy status shows it`,
        ),
      );
    }
    this.waiters = [];
  }

  status(now = Date.now()): NonNullable<VolumeStatus['replication']> {
    const parts: { state: ReplicationState | 'streaming' | 'error' | 'stopped'; lastError: string | undefined }[] = [...this.dbs.values()];
    if (this.files) parts.push(this.files);
    let state: ReplicationState;
    let lastError = this.bootError ?? parts.find((p) => p.lastError)?.lastError;
    if (this.stopped) state = 'stopped';
    else if (this.bootError || parts.some((p) => p.state === 'error')) state = 'error';
    else if (!this.files || this.replacing.size > 0 || parts.some((p) => p.state === 'snapshotting' || p.state === 'none')) state = 'snapshotting';
    else state = 'streaming';
    const databases = this.databases(now);
    const unprotected = databases.filter((d) => !d.protected).map((d) => d.path);
    if (!lastError && unprotected.length > 0) lastError = `not replicated: ${unprotected.join(', ')}`;
    let lagMs = this.files?.lagMs(now) ?? 0;
    let lagPeakMs = lagMs;
    let lagOf: string | undefined = lagMs > 0 ? 'files' : undefined;
    for (const d of databases) {
      lagMs = Math.max(lagMs, d.lagMs);
      const peak = Math.max(d.lagMs, d.lagPeakMs ?? 0);
      if (peak > lagPeakMs) {
        lagPeakMs = peak;
        lagOf = d.path;
      }
    }
    const generation = Math.max(0, ...[...this.dbs.values()].map((d) => d.generation));
    const seeds = [...this.dbs.values()].flatMap((d) => (d.lastSeed ? [d.lastSeed] : []));
    return {
      to: this.to.name,
      state,
      lagMs,
      lagPeakMs,
      ...(lagOf ? { lagOf } : {}),
      generation,
      ...(lastError ? { lastError } : {}),
      ...(seeds.length > 0 ? { seeds } : {}),
      ...(this.files ? { fileBytesSent: this.files.bytesSent } : {}),
      databases,
    };
  }

  /** Every database of the volume with its mode, how it is shipped, its state and lag (see contracts' DatabaseStatus). */
  databases(now = Date.now()): DatabaseStatus[] {
    return [...this.found]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([rel, f]): DatabaseStatus => {
        const s = this.dbs.get(rel);
        const common = { path: rel, mode: f.mode === 'missing' ? ('not-sqlite' as const) : f.mode, ...(f.switchedToWal ? { switchedToWal: true } : {}) };
        if (this.replacing.has(rel)) {
          return {
            ...common,
            method: 'snapshots',
            state: 'snapshotting',
            protected: true,
            lagMs: Math.max(0, now - f.since),
            reason: `changing how it is shipped (now ${f.mode})`,
          };
        }
        if (!s) {
          if (f.mode === 'empty')
            return { ...common, method: 'none', state: 'none', protected: true, lagMs: 0, reason: 'empty: SQLite has not written it yet' };
          return {
            ...common,
            method: 'none',
            state: 'error',
            protected: false,
            lagMs: Math.max(0, now - f.since),
            reason: 'not an SQLite database although named like one: not replicated; restore it from a backup or remove it',
          };
        }
        const snap = s instanceof SnapshotShipper ? s : null;
        const reason =
          snap === null
            ? undefined
            : f.mode === 'wal'
              ? 'switched to WAL mode by Understudy; shipped by snapshots until the app writes to it in WAL mode'
              : f.revertedByApp
                ? 'rollback-journal mode: the app put it back after Understudy switched it to WAL mode'
                : "rollback-journal mode (the app's choice, or created after the volume was prepared)";
        return {
          ...common,
          method: methodOf(s),
          state: s.state,
          protected: s.state !== 'error',
          lagMs: s.lagMs(now),
          ...(reason ? { reason } : {}),
          ...(s.lastError ? { lastError: s.lastError } : {}),
          ...(snap
            ? { lagPeakMs: snap.lagPeakMs(now), snapshots: snap.snapshots, ...(snap.lastSnapshotMs !== null ? { lastSnapshotMs: snap.lastSnapshotMs } : {}) }
            : {}),
        };
      });
  }

  /**
   * Sync mode's barrier: resolves once the replica holds on its disk every transaction
   * committed in any of the volume's (WAL-mode) databases before the call. Waits for the
   * first hello if replication has not started yet; finds databases created since the
   * last file scan. No timeout (race it); rejects once the shipper is stopped.
   */
  async catchUp(): Promise<void> {
    await this.booted;
    if (this.stopped)
      throw new UnderstudyError(
        'US_REPLICATION_STOPPED',
        `replication of ${this.opts.site} to ${this.to.name} stopped (promotion, new replica or shutdown): it starts again by itself; understudy status shows it`,
      );
    // A database the app created since the last scan is shipped from now on; one
    // directory walk serves every call of this tick.
    await (this.discovery ??= Promise.resolve().then(() => {
      this.discovery = null;
      this.discover(false);
    }));
    const dbs = [...this.dbs.entries()];
    if (dbs.length === 1 && this.replacing.size === 0) return this.catchUpDb(dbs[0]![0], dbs[0]![1]);
    await Promise.all([
      ...dbs.map(([rel, s]) => this.catchUpDb(rel, s)),
      ...[...this.replacing.keys()].map(async (rel) => {
        await this.replacing.get(rel);
        const s = this.dbs.get(rel);
        if (s) await this.catchUpDb(rel, s);
      }),
    ]);
  }

  /** One database's catch-up; when its shipper is replaced meanwhile (mode change), the new one's. */
  private async catchUpDb(rel: string, s: DatabaseShipper): Promise<void> {
    for (;;) {
      try {
        await s.catchUp();
        return;
      } catch (e) {
        if (this.stopped) throw e;
        await this.replacing.get(rel);
        const next = this.dbs.get(rel);
        if (next === s) throw e;
        if (next === undefined) return; // removed, or no longer a database SQLite can have written to
        s = next;
      }
    }
  }

  /** Resolves once a file scan begun after the call has shipped (plain files as of the call are on the copy). */
  async filesCaughtUp(): Promise<void> {
    await this.booted;
    if (this.stopped || !this.files)
      throw new UnderstudyError(
        'US_REPLICATION_STOPPED',
        `replication of ${this.opts.site} to ${this.to.name} stopped (promotion, new replica or shutdown): it starts again by itself; understudy status shows it`,
      );
    await this.files.nextScan();
  }

  async position(): Promise<VolumePosition> {
    const out: VolumePosition = {};
    await Promise.all(
      [...this.dbs.values()].map(async (d) => {
        out[d.rel] = await d.position();
      }),
    );
    return out;
  }

  /** What the replica holds of each database being shipped (for the live copy check). */
  shippedStates(): Map<string, ShippedState> {
    const out = new Map<string, ShippedState>();
    for (const [rel, d] of this.dbs) {
      const s = d instanceof DbShipper ? d.shippedState() : null;
      if (s) out.set(rel, s);
    }
    return out;
  }

  confirmed(): VolumePosition {
    return Object.fromEntries([...this.dbs.values()].map((d) => [d.rel, d.ackedLsn]));
  }

  private reached(pos: VolumePosition): boolean {
    return Object.entries(pos).every(([rel, lsn]) => (this.dbs.get(rel)?.ackedLsn ?? 0) >= lsn);
  }

  /** Resolves once the replica confirmed `pos`; rejects with US_TIMEOUT after timeoutMs. */
  waitConfirmed(pos: VolumePosition, timeoutMs = 5000): Promise<void> {
    if (this.reached(pos)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pos,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new UnderstudyError('US_TIMEOUT', `replica ${this.to.name} did not confirm ${this.opts.site} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  private checkWaiters(): void {
    if (this.waiters.length === 0) return;
    this.waiters = this.waiters.filter((w) => {
      if (!this.reached(w.pos)) return true;
      clearTimeout(w.timer);
      w.resolve();
      return false;
    });
  }
}
