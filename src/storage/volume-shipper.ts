import path from 'node:path';
import type { Logger } from 'pino';
import type { ReplicationState, VolumeStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { DbShipper, type ShippedState } from './db-shipper.ts';
import type { WalEnd } from './wal-chain-check.ts';
import { FileShipper } from './file-sync.ts';
import { ReplicaClient } from './replica-protocol.ts';
import { isWalModeDatabase, listDatabases } from './sqlite-file.ts';

/**
 * Replication of one primary volume to one replica: a FileShipper for plain files and
 * a DbShipper per database (found at start and by every file scan; a database is
 * shipped once its header says WAL mode — a rollback-journal database is not
 * replicated and is reported in lastError).
 *
 * Confirmation API (for sync mode): `position()` reads every database's WAL now and
 * returns `{ [db]: lsn }`; `waitConfirmed(pos)` resolves once the replica has
 * acknowledged at least that much of every database. Sync mode uses `catchUp()`,
 * which reads the WAL files after the call instead of trusting a remembered position
 * (see DbShipper's `run()` for why it cannot let a committed write slip).
 */
export type VolumePosition = Record<string, number>;

export interface ReplicationTuning {
  /** Idle WAL poll interval. @default 10 */
  walPollMs?: number;
  /** WAL frames after which the shipper checkpoints once all is shipped. @default 1000 */
  checkpointFrames?: number;
  /** Interval of the full file scan. @default 1000 */
  fileScanMs?: number;
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

interface Waiter { pos: VolumePosition; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

export class VolumeShipper {
  readonly to: { name: string; url: string };
  private readonly client: ReplicaClient;
  private readonly log: Logger;
  private readonly dbs = new Map<string, DbShipper>();
  private files: FileShipper | null = null;
  private stopped = false;
  private boot: Promise<void> | null = null;
  private bootError: string | undefined;
  private waiters: Waiter[] = [];
  private notWal = new Set<string>();
  /** Resolves when the first hello succeeded (databases are then being shipped). */
  private booted!: Promise<void>;
  private bootedResolve!: () => void;
  private discovery: Promise<void> | null = null;

  constructor(private readonly opts: VolumeShipperOptions) {
    this.to = opts.to;
    this.client = new ReplicaClient(opts.to.url, opts.site, opts.epochOf, undefined, opts.channel ?? 'replica');
    this.log = opts.logger.child({ site: opts.site, replicaOf: opts.site, to: opts.to.name });
    this.booted = new Promise<void>((resolve) => { this.bootedResolve = resolve; });
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
        this.files = new FileShipper({ volumeDir: this.opts.volumeDir, client: this.client, logger: this.log, ...(this.opts.include ? { include: this.opts.include } : {}), ...(this.opts.tuning?.fileScanMs ? { scanMs: this.opts.tuning.fileScanMs } : {}) });
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

  /** Starts a DbShipper for every WAL-mode database not shipped yet. */
  discover(): void {
    if (this.stopped) return;
    for (const rel of listDatabases(this.opts.volumeDir)) {
      if (this.dbs.has(rel) || (this.opts.include && !this.opts.include(rel))) continue;
      if (!isWalModeDatabase(path.join(this.opts.volumeDir, rel))) {
        if (!this.notWal.has(rel)) this.log.warn({ db: rel }, 'database is not in WAL mode (yet); it is not replicated until it is');
        this.notWal.add(rel);
        continue;
      }
      this.notWal.delete(rel);
      const s = new DbShipper({
        volumeDir: this.opts.volumeDir, rel, client: this.client, logger: this.log,
        onAck: () => this.checkWaiters(),
        ...(this.opts.knownEnd ? { knownEnd: () => this.opts.knownEnd!(rel) } : {}),
        ...((this.opts.channel ?? 'replica') === 'replica' ? { heartbeatMs: REPLICA_HEARTBEAT_MS } : {}),
        ...(this.opts.tuning?.walPollMs ? { idlePollMs: this.opts.tuning.walPollMs } : {}),
        ...(this.opts.tuning?.checkpointFrames ? { checkpointFrames: this.opts.tuning.checkpointFrames } : {}),
      });
      this.dbs.set(rel, s);
      s.start();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.bootedResolve(); // catchUp() waiters go on to find the stopped shippers
    await this.boot;
    await Promise.all([this.files?.stop(), ...[...this.dbs.values()].map((d) => d.stop())]);
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(new UnderstudyError('US_REPLICATION', `replication of ${this.opts.site} to ${this.to.name} stopped`)); }
    this.waiters = [];
  }

  status(now = Date.now()): NonNullable<VolumeStatus['replication']> {
    const parts: { state: ReplicationState | 'streaming' | 'error' | 'stopped'; lastError: string | undefined }[] = [...this.dbs.values()];
    if (this.files) parts.push(this.files);
    let state: ReplicationState;
    let lastError = this.bootError ?? parts.find((p) => p.lastError)?.lastError;
    if (this.stopped) state = 'stopped';
    else if (this.bootError || parts.some((p) => p.state === 'error')) state = 'error';
    else if (!this.files || parts.some((p) => p.state === 'snapshotting' || p.state === 'none')) state = 'snapshotting';
    else state = 'streaming';
    if (!lastError && this.notWal.size > 0) lastError = `not replicated (not in WAL mode): ${[...this.notWal].join(', ')}`;
    const lagMs = Math.max(0, this.files?.lagMs(now) ?? 0, ...[...this.dbs.values()].map((d) => d.lagMs(now)));
    const generation = Math.max(0, ...[...this.dbs.values()].map((d) => d.generation));
    const seeds = [...this.dbs.values()].flatMap((d) => (d.lastSeed ? [d.lastSeed] : []));
    return {
      to: this.to.name, state, lagMs, generation, ...(lastError ? { lastError } : {}),
      ...(seeds.length > 0 ? { seeds } : {}), ...(this.files ? { fileBytesSent: this.files.bytesSent } : {}),
    };
  }

  /**
   * Sync mode's barrier: resolves once the replica holds on its disk every transaction
   * committed in any of the volume's (WAL-mode) databases before the call. Waits for the
   * first hello if replication has not started yet; finds databases created since the
   * last file scan. No timeout (race it); rejects once the shipper is stopped.
   */
  async catchUp(): Promise<void> {
    await this.booted;
    if (this.stopped) throw new UnderstudyError('US_REPLICATION', `replication of ${this.opts.site} to ${this.to.name} stopped`);
    // A database the app created since the last scan is shipped from now on; one
    // directory walk serves every call of this tick.
    await (this.discovery ??= Promise.resolve().then(() => { this.discovery = null; this.discover(); }));
    const dbs = [...this.dbs.values()];
    if (dbs.length === 1) return dbs[0]!.catchUp();
    await Promise.all(dbs.map((d) => d.catchUp()));
  }

  /** Resolves once a file scan begun after the call has shipped (plain files as of the call are on the copy). */
  async filesCaughtUp(): Promise<void> {
    await this.booted;
    if (this.stopped || !this.files) throw new UnderstudyError('US_REPLICATION', `replication of ${this.opts.site} to ${this.to.name} stopped`);
    await this.files.nextScan();
  }

  async position(): Promise<VolumePosition> {
    const out: VolumePosition = {};
    await Promise.all([...this.dbs.values()].map(async (d) => { out[d.rel] = await d.position(); }));
    return out;
  }

  /** What the replica holds of each database being shipped (for the live copy check). */
  shippedStates(): Map<string, ShippedState> {
    const out = new Map<string, ShippedState>();
    for (const [rel, d] of this.dbs) {
      const s = d.shippedState();
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
        pos, resolve, reject,
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
