import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { RenderedRule } from '../transform/render-rules.ts';
import type { UnderstudyConfig, StorageConfig } from '../config/types.ts';
import type {
  DatabaseStatus,
  PromoteResponse,
  StorageStatus,
  SyncBarrierResponse,
  TransformResponse,
  VerificationProblem,
  VolumeStatus,
} from '../shared/contracts.ts';
import { applyTransform } from '../transform/index.ts';
import { seedProblem } from '../shared/seed.ts';
import { UnderstudyError, isUnderstudyError } from '../shared/errors.ts';
import { JsonRouter, createJsonServer, listen, type JsonServer } from '../shared/http-json.ts';
import { fsyncDir, tempPathFor } from './fs-durable.ts';
import { FencingGate } from '../shared/fencing.ts';
import { fencingFile, tokenKeptIn } from './fencing-file.ts';
import { KeyedLock } from './keyed-lock.ts';
import { ReplicaDbWriter } from './replica-db-writer.ts';
import { registerReplicaRoutes } from './replica-routes.ts';
import { registerVolumeRoutes } from './volume-routes.ts';
import { LiveCopyCheck, type LiveCopyCheckOptions } from './live-copy-check.ts';
import { listDatabases, readDatabaseHeader } from './sqlite-file.ts';
import { switchDatabasesToWal } from './wal-switch.ts';
import { checkVolumeDatabases } from './volume-check.ts';
import { VolumeShipper, type ReplicationTuning, type VolumePosition } from './volume-shipper.ts';
import { loadAllMeta, replicaPath, saveMeta, stalePath, volumePath, type VolumeMeta } from './volume-meta.ts';
import { SyncGate } from './sync-gate.ts';
// Backups, verification and restore live in ./vault/ (VaultService).
import { VaultService, type VaultServiceOptions } from './vault/vault-service.ts';
import { TestHooks } from './test-hooks.ts';
// Reader copies (the read-only portion for reader hosts), fed and held.
import { ReaderShipping } from './reader-shipping.ts';
import { ReaderCopies } from './reader-copies.ts';
import { partSecurity } from '../shared/cluster-transport.ts';
import { DrillCopies } from './drill-copies.ts';

export { checkVolumeDatabases } from './volume-check.ts';

/**
 * The storage processor: one per storage system (`understudy storage --name NAME`).
 * It owns the volumes under `<storage.path>/volumes/`, their meta, and replication:
 * the processor holding a primary volume ships it to the replica's processor; hosts
 * and apps never copy anything.
 *
 * Fencing: every command and every replication request carries the site's epoch.
 * The volume's meta keeps the highest epoch accepted; anything lower gets 409
 * US_STALE_EPOCH. All work on one volume is serialized (KeyedLock), so a promotion
 * waits for an append in progress and no append of the old epoch lands after it.
 */
export interface StorageProcessorOptions {
  tuning?: ReplicationTuning;
  /** Schedules of backups and verification, chunk size, vault GC grace. */
  vault?: VaultServiceOptions;
  /** The live copy check of WAL chains and db pages (live-copy-check.ts). */
  liveCheck?: LiveCopyCheckOptions;
}

interface Volume {
  meta: VolumeMeta;
  dir: string;
  shipper: VolumeShipper | null;
  writers: Map<string, ReplicaDbWriter>;
  lastAppliedAt?: number;
  /** Sync mode state; made at the first barrier or status of a sync-mode primary. */
  gate?: SyncGate;
}

const SITE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export class StorageProcessor {
  readonly storage: StorageConfig;
  private readonly log: Logger;
  private readonly volumes = new Map<string, Volume>();
  private readonly lock = new KeyedLock();
  private server: JsonServer | null = null;
  /** Refuses commands of a controller that no longer leads (fencing.ts); its counts are in the status. */
  private fencing: FencingGate | null = null;
  private readonly tuning: ReplicationTuning | undefined;
  /** Backups, verification, restore (and the vault's store when `backup: true`). */
  private readonly vault: VaultService;
  /** Fault injection for e2e tests; off unless UNDERSTUDY_TEST_HOOKS=1 (test-hooks.ts). */
  private readonly testHooks: TestHooks;
  /** Ships the read-only portion of primaries here to reader hosts' storage. */
  private readonly readerShipping: ReaderShipping;
  /** Reader copies held here for reader hosts. */
  private readonly readerCopies: ReaderCopies;
  /** Every live copy's WAL chain and db pages against what was shipped, every second. */
  private readonly liveCheck: LiveCopyCheck;
  /** Throwaway copies of replicas for rehearsals (`understudy drill`), apart from everything else. */
  private readonly drills: DrillCopies;

  constructor(
    readonly config: UnderstudyConfig,
    readonly name: string,
    logger?: Logger,
    opts: StorageProcessorOptions = {},
  ) {
    const s = config.storage[name];
    if (!s) {
      const known = Object.keys(config.storage).join(', ') || '(none)';
      throw new UnderstudyError('US_CONFIG_INVALID', `storage "${name}" is not in ${config.file}: known storage systems are ${known}`);
    }
    this.storage = s;
    this.log = (logger ?? pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' }, pino.destination(2))).child({ storage: name });
    this.tuning = opts.tuning;
    this.readerShipping = new ReaderShipping({
      name,
      log: this.log,
      ...(opts.tuning ? { tuning: opts.tuning } : {}),
      primaryOf: (site) => {
        const v = this.volumes.get(site);
        return v && v.meta.role === 'primary' ? { dir: v.dir, epoch: v.meta.epoch } : null;
      },
      portionOf: (site) => config.sites[site]?.volume.readonly ?? [],
    });
    this.readerCopies = new ReaderCopies(s.path, name, this.log, (site) => config.sites[site]?.app.seed);
    this.drills = new DrillCopies(name, s.path, this.log, {
      withVolumeQuiesced: (site, fn) => this.withVolumeQuiesced(site, fn),
      volumeInfo: (site) => {
        const v = this.volumes.get(site);
        return v ? { role: v.meta.role, lastAppliedAt: v.lastAppliedAt ?? null } : undefined;
      },
    });
    this.testHooks = new TestHooks(
      {
        withVolumeQuiesced: (site, fn) => this.withVolumeQuiesced(site, fn),
        forgetHeld: (site) => {
          const v = this.volumes.get(site);
          for (const w of v?.writers.values() ?? []) w.reset();
          v?.writers.clear();
        },
      },
      name,
    );
    this.vault = new VaultService(
      {
        config,
        name,
        storage: s,
        log: this.log,
        sites: () => [...this.volumes.keys()].sort(),
        volumeInfo: (site) => {
          const v = this.volumes.get(site);
          return v ? { role: v.meta.role, epoch: v.meta.epoch, dir: v.dir } : undefined;
        },
        withVolumeQuiesced: (site, fn) => this.withVolumeQuiesced(site, fn),
        installRestored: (site, epoch, fromDir) => this.installRestored(site, epoch, fromDir),
        copyKnowledge: (site, rel) => ({ state: this.volumes.get(site)?.shipper?.shippedStates().get(rel) ?? null, known: this.liveCheck.knownEnd(site, rel) }),
      },
      opts.vault,
    );
    this.liveCheck = new LiveCopyCheck(
      {
        storagePath: s.path,
        log: this.log,
        sites: () => [...this.volumes.keys()].sort(),
        withCopy: (site, fn) =>
          this.lock.run(site, async () => {
            const v = this.volumes.get(site);
            if (!v || !fs.existsSync(v.dir)) return undefined;
            if (v.meta.role === 'primary') return fn({ role: 'primary', dir: v.dir, shipped: v.shipper?.shippedStates() ?? new Map() });
            if (v.meta.role === 'replica') return fn({ role: 'replica', dir: v.dir, writer: (rel) => this.writer(v, rel) });
            return undefined;
          }),
        report: (site, result) => this.vault.noticeLiveCheck(site, result),
      },
      opts.liveCheck,
    );
  }

  /** Loads the meta of every volume, resumes shipping where it was, and listens. */
  async start(): Promise<void> {
    await fsp.mkdir(path.join(this.storage.path, 'volumes'), { recursive: true });
    await fsp.mkdir(path.join(this.storage.path, 'meta'), { recursive: true });
    for (const meta of loadAllMeta(this.storage.path)) {
      const vol = this.volume(meta.site, meta);
      if (meta.role === 'primary' && meta.replicateTo) this.startShipper(vol, meta.replicateTo);
    }
    // The storage processors keep the highest fencing token on disk: their commands decide who writes.
    const fencing = (this.fencing = new FencingGate(`storage ${this.name}`, tokenKeptIn(fencingFile(this.storage.path)), (token, highest, req) =>
      this.log.warn({ token, highest, method: req.method, url: req.url }, 'refused a command from a controller that no longer leads (lower fencing token)'),
    ));
    this.server = createJsonServer(this.router(), null, { security: partSecurity(this.config, this.name), part: `storage ${this.name}`, fencing });
    await listen(this.server, this.storage.listen.host, this.storage.listen.port);
    this.vault.start(); // backup and verification timers
    this.liveCheck.start();
    this.log.info(
      { listen: `${this.storage.listen.host}:${this.storage.listen.port}`, path: this.storage.path, volumes: this.volumes.size },
      'storage processor listening',
    );
  }

  /** Closes the server, stops every shipper (which closes their SQLite handles). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // A request's handler goes on after its connection is closed (a chunk being written,
      // a promotion): it ends before the processor says it stopped, not after.
      await server.settled();
    }
    await this.liveCheck.stop();
    await this.vault.stop(); // timers off, running backups/verifications/restores settled
    await this.readerShipping.stopEverything();
    for (const v of this.volumes.values()) v.gate?.close();
    await Promise.all(
      [...this.volumes.values()].map(async (v) => {
        await v.shipper?.stop();
        v.shipper = null;
      }),
    );
    this.log.info('storage processor stopped');
  }

  status(): StorageStatus {
    const readerCopies = this.readerCopies.status();
    const fencing = this.fencing?.view() ?? null;
    return {
      name: this.name,
      volumes: [...this.volumes.values()].sort((a, b) => a.meta.site.localeCompare(b.meta.site)).map((v) => this.volumeStatus(v)),
      ...(readerCopies.length > 0 ? { readerCopies } : {}),
      ...(fencing ? { fencing } : {}),
    };
  }

  /** Current committed position of every database of a primary that ships (sync mode). */
  async sourcePosition(site: string): Promise<VolumePosition> {
    const v = this.mustVolume(site);
    if (!v.shipper)
      throw new UnderstudyError(
        'US_NOT_REPLICATING',
        `volume ${site} on ${this.name} is not replicating (it has no replica, or its replication has not started): understudy status shows its replication; wait until it streams`,
      );
    return v.shipper.position();
  }

  /** Resolves once the replica holds everything committed before the call, plain files as of the call included; US_TIMEOUT after timeoutMs. */
  async catchUp(site: string, timeoutMs: number): Promise<void> {
    const v = this.mustVolume(site);
    const shipper = v.shipper;
    if (!shipper)
      throw new UnderstudyError(
        'US_NOT_REPLICATING',
        `volume ${site} on ${this.name} is not replicating (it has no replica, or its replication has not started): understudy status shows its replication; wait until it streams`,
      );
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        // Plain files too: an app that writes a file and then a database row naming it
        // (an upload, then its record) must not leave the replica with the row and not
        // the file. The sync barrier covers databases only; this one, a switchover's and
        // a failover drain's, is asked once, so one file scan is worth its cost.
        Promise.all([shipper.catchUp(), shipper.filesCaughtUp()]),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new UnderstudyError(
                  'US_TIMEOUT',
                  `replica ${shipper.to.name} did not confirm ${site} within ${timeoutMs} ms (replication ${shipper.status().state})`,
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when the replica confirmed everything up to `position` (see VolumeShipper). */
  waitConfirmed(site: string, position: VolumePosition, timeoutMs?: number): Promise<void> {
    const v = this.mustVolume(site);
    if (!v.shipper)
      return Promise.reject(
        new UnderstudyError(
          'US_NOT_REPLICATING',
          `volume ${site} on ${this.name} is not replicating (it has no replica, or its replication has not started): understudy status shows its replication; wait until it streams`,
        ),
      );
    return v.shipper.waitConfirmed(position, timeoutMs);
  }

  /**
   * Sync mode's barrier (see SyncGate and contracts' SyncBarrierRequest): resolves
   * once the replica holds everything the volume's databases had committed when it
   * was called, or says it is degraded / timed out.
   */
  syncBarrier(site: string, onReplicaLost: 'degrade' | 'strict', timeoutMs: number): Promise<SyncBarrierResponse> {
    const v = this.mustVolume(site);
    if (v.meta.role !== 'primary') {
      throw new UnderstudyError(
        'US_VOLUME_ROLE',
        `volume ${site} on storage ${this.name} is ${v.meta.role === 'replica' ? 'a replica' : 'not a primary'}: a sync barrier must go to the storage processor of the primary volume (the director's route names the wrong one)`,
      );
    }
    return this.gateOf(v).barrier(onReplicaLost, timeoutMs);
  }

  private gateOf(v: Volume): SyncGate {
    v.gate ??= new SyncGate(v.meta.site, () => v.shipper, this.log);
    return v.gate;
  }

  /**
   * Runs `fn(volumeDir)` while no replication write or command touches the volume:
   * a consistent moment to copy a replica (backups, tests). Keep it short.
   */
  withVolumeQuiesced<T>(site: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const v = this.mustVolume(site);
    return this.lock.run(site, () => fn(v.dir));
  }

  // ------------------------------------------------------------ volumes

  private volume(site: string, meta?: VolumeMeta): Volume {
    let v = this.volumes.get(site);
    if (!v) {
      const m = meta ?? { site, role: 'none' as const, epoch: 0, updatedAt: Date.now() };
      v = {
        meta: m,
        dir: m.role === 'replica' ? replicaPath(this.storage.path, site) : volumePath(this.storage.path, site),
        shipper: null,
        writers: new Map(),
      };
      this.volumes.set(site, v);
    }
    return v;
  }

  private mustVolume(site: string): Volume {
    checkSite(site);
    const v = this.volumes.get(site);
    if (!v) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no volume for site ${site}`);
    return v;
  }

  private volumeStatus(v: Volume): VolumeStatus {
    return {
      site: v.meta.site,
      role: v.meta.role,
      epoch: v.meta.epoch,
      path: path.resolve(v.dir),
      ...(v.shipper ? { replication: v.shipper.status() } : v.meta.role === 'primary' ? { databases: unreplicatedDatabases(v.dir) } : {}),
      ...(v.meta.role === 'replica' && v.lastAppliedAt !== undefined ? { lastAppliedAt: v.lastAppliedAt } : {}),
      ...(v.meta.role === 'primary' && (v.gate?.used || this.config.sites[v.meta.site]?.volume.replication === 'sync')
        ? { sync: this.gateOf(v).status() }
        : {}),
      ...this.vault.statusOf(v.meta.site), // verification, restore
      ...(this.readerShipping.status(v.meta.site).length > 0 ? { readers: this.readerShipping.status(v.meta.site) } : {}),
    };
  }

  private async persist(v: Volume, patch: Partial<VolumeMeta>): Promise<void> {
    const next: VolumeMeta = { ...v.meta, ...patch, updatedAt: Date.now() };
    for (const k of Object.keys(patch) as (keyof VolumeMeta)[]) if (patch[k] === undefined) delete next[k];
    await saveMeta(this.storage.path, next);
    v.meta = next;
  }

  private refuseStale(v: Volume, epoch: number, what: string): void {
    if (epoch < v.meta.epoch) {
      throw new UnderstudyError(
        'US_STALE_EPOCH',
        `${what} for ${v.meta.site} carries epoch ${epoch}, but storage ${this.name} has seen epoch ${v.meta.epoch}`,
        { epoch: v.meta.epoch },
      );
    }
  }

  private startShipper(v: Volume, to: { name: string; url: string }): void {
    v.shipper = new VolumeShipper({
      site: v.meta.site,
      volumeDir: v.dir,
      from: this.name,
      to,
      epochOf: () => v.meta.epoch,
      logger: this.log,
      ...(this.tuning ? { tuning: this.tuning } : {}),
      knownEnd: (rel) => this.liveCheck.knownEnd(v.meta.site, rel),
    });
    v.shipper.start();
  }

  /** The volume stops or starts being a primary here: its sync state starts over. */
  private resetGate(v: Volume): void {
    v.gate?.close();
    delete v.gate;
  }

  private async stopShipper(v: Volume): Promise<void> {
    const s = v.shipper;
    v.shipper = null;
    await s?.stop();
  }

  /**
   * Folds every replica database's WAL into its file, leaving plain consistent databases.
   * A database whose WAL no longer holds what the replica acknowledged is not folded
   * (that would make SQLite's recovery drop its newest commits): its problems are returned.
   */
  private foldDatabases(v: Volume): VerificationProblem[] {
    const problems: VerificationProblem[] = [];
    for (const rel of listDatabases(v.dir)) {
      try {
        this.writer(v, rel).fold();
      } catch (e) {
        if (!isUnderstudyError(e) || e.code !== 'US_REPLICA_CORRUPT') throw e;
        problems.push(...((e.details as { problems?: VerificationProblem[] } | undefined)?.problems ?? []));
      }
    }
    for (const w of v.writers.values()) w.reset();
    v.writers.clear();
    return problems;
  }

  private writer(v: Volume, rel: string): ReplicaDbWriter {
    let w = v.writers.get(rel);
    if (!w) {
      const site = v.meta.site;
      w = new ReplicaDbWriter(v.dir, rel, {
        known: () => this.liveCheck.knownEnd(site, rel),
        // Found while folding (outside a round): reported at once; the next round repeats it until re-seeded.
        onDamage: (_rel, problems) => this.vault.noticeLiveCheck(site, { ok: false, problems, checkedAt: Date.now(), ms: 0 }, true),
      });
      v.writers.set(rel, w);
    }
    return w;
  }

  // ------------------------------------------------------------ commands

  async init(site: string, epoch: number, seed?: string): Promise<VolumeStatus> {
    checkSite(site);
    return this.lock.run(site, async () => {
      const v = this.volume(site);
      this.refuseStale(v, epoch, 'init');
      if (!fs.existsSync(v.dir)) {
        await createVolume(v.dir, seed);
        // A new volume: no app has opened its databases yet (wal-switch.ts).
        switchDatabasesToWal(v.dir, this.log.child({ site }));
      } else {
        const problems = checkVolumeDatabases(v.dir);
        if (problems.length > 0) throw new UnderstudyError('US_VOLUME_NOT_DATABASE', problems[0]!, { problems });
      }
      if (v.meta.role === 'primary' && v.meta.epoch === epoch) return this.volumeStatus(v);
      if (v.meta.role === 'replica') {
        const unfolded = this.foldDatabases(v);
        if (unfolded.length > 0) {
          const p = unfolded[0]!;
          throw new UnderstudyError(
            'US_REPLICA_CORRUPT',
            `the copy of ${site} on storage ${this.name} is damaged (${p.file}: ${p.detail}): it is not made primary; restore the newest good restore point instead (understudy restore ${site})`,
            { problems: unfolded },
          );
        }
      }
      if (v.meta.role !== 'primary') this.resetGate(v);
      await this.persist(v, { role: 'primary', epoch, source: undefined, ...(v.meta.role === 'primary' ? {} : { replicateTo: undefined }) });
      this.log.info({ site, epoch }, 'volume is primary');
      return this.volumeStatus(v);
    });
  }

  async replicate(site: string, epoch: number, to: { name: string; url: string }): Promise<VolumeStatus> {
    return this.lock.run(site, async () => {
      const v = this.mustVolume(site);
      this.refuseStale(v, epoch, 'replicate');
      if (v.meta.role !== 'primary')
        throw new UnderstudyError(
          'US_VOLUME_ROLE',
          `volume ${site} on storage ${this.name} is ${v.meta.role === 'none' ? 'not a primary' : 'a replica'}: only a primary ships; promote or init it first`,
        );
      if (to.name === this.name) throw new UnderstudyError('US_BAD_REQUEST', `storage ${this.name} cannot replicate ${site} to itself`);
      const same = v.shipper && v.shipper.to.name === to.name && v.shipper.to.url === to.url;
      if (!same) await this.stopShipper(v);
      if (epoch !== v.meta.epoch || !same) await this.persist(v, { epoch, replicateTo: to });
      if (!same) {
        this.startShipper(v, to);
        this.log.info({ site, epoch, to: to.name }, 'replication requested');
      }
      return this.volumeStatus(v);
    });
  }

  async promote(site: string, epoch: number): Promise<PromoteResponse> {
    return this.lock.run(site, async () => {
      const v = this.mustVolume(site);
      const res = (): PromoteResponse => ({
        site,
        epoch: v.meta.epoch,
        role: 'primary',
        ...(v.lastAppliedAt !== undefined ? { lastAppliedAt: v.lastAppliedAt } : {}),
      });
      if (v.meta.role === 'primary' && v.meta.epoch === epoch) return res();
      if (epoch <= v.meta.epoch) {
        throw new UnderstudyError(
          'US_STALE_EPOCH',
          `promote of ${site} to epoch ${epoch}: storage ${this.name} is already at epoch ${v.meta.epoch}; promote with a higher epoch`,
          { epoch: v.meta.epoch },
        );
      }
      const primaryDir = volumePath(this.storage.path, site);
      if (v.meta.role === 'replica' && !fs.existsSync(v.dir) && fs.existsSync(primaryDir)) {
        // A promotion that moved the replica into place and stopped before persisting: it is in place.
        v.dir = primaryDir;
      }
      if (!fs.existsSync(v.dir)) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.name} holds no data for ${site}: nothing to promote`);
      // Verified before it becomes primary, once everything it applied is folded in.
      // A refusal changes nothing else (no fence, no move): the same promotion fails the same way again.
      const unfolded = v.meta.role === 'replica' ? this.foldDatabases(v) : [];
      const check = await this.vault.verifyForPromotion(site, v.dir, unfolded);
      if (!check.ok) {
        const problems = check.problems
          .slice(0, 3)
          .map((p) => `${p.file}: ${p.kind}${p.detail ? ` (${p.detail})` : ''}`)
          .join('; ');
        throw new UnderstudyError(
          'US_REPLICA_CORRUPT',
          `the copy of ${site} on storage ${this.name} failed verification before promotion (${problems}): it was not promoted; restore the newest good restore point instead (understudy restore ${site})`,
          { verification: check },
        );
      }
      // Fence first (in memory, under the volume lock): from here every request of
      // an older epoch is refused, even if persisting fails below.
      const epochBefore = v.meta.epoch;
      v.meta = { ...v.meta, epoch };
      await this.stopShipper(v);
      await this.readerShipping.stopAll(site); // a copy that is no longer primary here feeds no reader
      this.resetGate(v);
      this.foldDatabases(v);
      if (v.dir !== primaryDir) {
        // The replica takes the primary's place; a stale copy there (the old primary's) is kept aside, never deleted.
        if (fs.existsSync(primaryDir)) {
          const aside = stalePath(this.storage.path, site, epochBefore);
          await fsp.mkdir(path.dirname(aside), { recursive: true });
          await fsp.rename(primaryDir, aside);
          this.log.warn({ site, aside }, 'a stale primary copy was moved aside');
        }
        await fsp.rename(v.dir, primaryDir);
        await fsyncDir(path.dirname(primaryDir));
        v.dir = primaryDir;
      }
      await this.persist(v, { role: 'primary', epoch, source: undefined, replicateTo: undefined });
      // Before the app starts on it (the takeover starts it after the promotion): wal-switch.ts.
      switchDatabasesToWal(v.dir, this.log.child({ site }));
      this.log.info({ site, epoch, lastAppliedAt: v.lastAppliedAt, verifyMs: check.ms }, 'replica promoted to primary');
      return res();
    });
  }

  async demote(site: string, epoch: number): Promise<VolumeStatus> {
    return this.lock.run(site, async () => {
      const v = this.mustVolume(site);
      this.refuseStale(v, epoch, 'demote');
      await this.stopShipper(v);
      await this.readerShipping.stopAll(site); // a copy that is no longer primary here feeds no reader
      this.resetGate(v);
      for (const w of v.writers.values()) w.reset();
      await this.persist(v, { role: 'none', epoch, replicateTo: undefined, source: undefined });
      this.log.info({ site, epoch }, 'volume demoted');
      return this.volumeStatus(v);
    });
  }

  async transform(site: string, epoch: number, rules: RenderedRule[]): Promise<TransformResponse> {
    return this.lock.run(site, async () => {
      const v = this.mustVolume(site);
      this.refuseStale(v, epoch, 'transform');
      if (epoch > v.meta.epoch) await this.persist(v, { epoch });
      return { changes: applyTransform(v.dir, rules) };
    });
  }

  /**
   * Puts a restored volume — rebuilt and verified by the vault
   * service in `fromDir`, on this file system — in place as the primary at `epoch`.
   * Refuses an epoch lower than the one seen, or equal while the volume is primary
   * here (restoring under a live primary needs a new epoch: the fence). Whatever was
   * here (an old primary copy, a replica) is moved aside to `stale/`, never deleted.
   */
  async installRestored(site: string, epoch: number, fromDir: string): Promise<void> {
    checkSite(site);
    return this.lock.run(site, async () => {
      const v = this.volume(site);
      this.refuseStale(v, epoch, 'restore');
      if (v.meta.role === 'primary' && v.meta.epoch === epoch) {
        throw new UnderstudyError(
          'US_STALE_EPOCH',
          `restore of ${site} at epoch ${epoch}: the volume is already primary at that epoch on storage ${this.name}; restore with a higher epoch`,
          { epoch },
        );
      }
      const epochBefore = v.meta.epoch; // stale copies are named by the epoch they had (as promote does)
      v.meta = { ...v.meta, epoch }; // fence first, as promote does
      await this.stopShipper(v);
      await this.readerShipping.stopAll(site); // a copy that is no longer primary here feeds no reader
      this.resetGate(v);
      for (const w of v.writers.values()) w.reset();
      v.writers.clear();
      const primaryDir = volumePath(this.storage.path, site);
      for (const [dir, tag] of [
        [primaryDir, ''],
        [replicaPath(this.storage.path, site), '-replica'],
      ] as const) {
        if (!fs.existsSync(dir)) continue;
        const aside = `${stalePath(this.storage.path, site, epochBefore)}${tag}`;
        await fsp.mkdir(path.dirname(aside), { recursive: true });
        await fsp.rename(dir, aside);
        this.log.warn({ site, aside }, 'restore: the copy that was here was moved aside');
      }
      await fsp.rename(fromDir, primaryDir);
      await fsyncDir(path.dirname(primaryDir));
      v.dir = primaryDir;
      delete v.lastAppliedAt;
      await this.liveCheck.forget(site);
      switchDatabasesToWal(v.dir, this.log.child({ site })); // before the app starts on it (wal-switch.ts)
      await this.persist(v, { role: 'primary', epoch, source: undefined, replicateTo: undefined });
    });
  }

  // ------------------------------------------------------------ replica side

  /**
   * Runs a replication request: refuses a stale epoch; a volume that is primary here
   * at the same epoch refuses too (two primaries); a higher epoch wins (this copy was
   * superseded and becomes a replica).
   */
  private replicaOp<T>(site: string, epoch: number, fn: (v: Volume) => Promise<T>): Promise<T> {
    checkSite(site);
    return this.lock.run(site, async () => {
      const v = this.volume(site);
      this.testHooks.refuseReplication(site);
      this.refuseStale(v, epoch, 'replication');
      if (v.meta.role === 'primary') {
        if (epoch === v.meta.epoch) {
          throw new UnderstudyError(
            'US_STALE_EPOCH',
            `storage ${this.name} holds the primary copy of ${site} at epoch ${epoch}: it does not accept replication at that epoch`,
            { epoch },
          );
        }
        this.log.warn({ site, epoch, was: v.meta.epoch }, 'a newer epoch replicates to this volume; it is no longer primary here');
        await this.stopShipper(v);
        await this.readerShipping.stopAll(site); // a copy that is no longer primary here feeds no reader
        this.resetGate(v);
      }
      if (v.meta.role !== 'replica') {
        // From here the copy at volumes/<site> (if any) is stale and stays untouched; the replica lives apart.
        for (const w of v.writers.values()) w.reset();
        v.writers.clear();
        v.dir = replicaPath(this.storage.path, site);
      }
      if (v.meta.role !== 'replica' || v.meta.epoch !== epoch) await this.persist(v, { role: 'replica', epoch, replicateTo: undefined });
      if (!fs.existsSync(v.dir)) await fsp.mkdir(v.dir, { recursive: true }); // a sync check: this is on every append
      const out = await fn(v);
      v.lastAppliedAt = Date.now();
      return out;
    });
  }

  // ------------------------------------------------------------ HTTP

  /** The site's volume status; US_NOT_FOUND when there is none here. */
  volumeStatusOf(site: string): VolumeStatus {
    return this.volumeStatus(this.mustVolume(site));
  }

  /** What the replica has confirmed of the site's primary volume here (empty when it does not ship). */
  confirmedPosition(site: string): unknown {
    return this.mustVolume(site).shipper?.confirmed() ?? {};
  }

  /** Starts shipping the site's read-only portion to a reader copy on `to` (reader-shipping.ts). */
  startReaders(site: string, epoch: number, to: { name: string; url: string }): Promise<unknown> {
    return this.lock.run(site, async () => {
      this.mustVolume(site);
      return this.readerShipping.start(site, epoch, to);
    });
  }

  stopReaders(site: string, to: string): Promise<void> {
    return this.readerShipping.stop(site, to);
  }

  readersCatchUp(site: string, timeoutMs: number, to?: string): Promise<{ readers: string[] }> {
    return this.readerShipping.catchUp(site, timeoutMs, to);
  }

  private router(): JsonRouter {
    const r = new JsonRouter();
    registerVolumeRoutes(r, this); // sync barrier, status, volume lifecycle, reader copies (primary side)
    this.readerCopies.register(r); // reader copies, the reader's side
    this.vault.register(r); // /v1/vault/*, backup-now, verify, restore
    this.testHooks.register(r); // only with UNDERSTUDY_TEST_HOOKS=1
    this.drills.register(r); // rehearsal copies (drill-copies.ts)

    registerReplicaRoutes<Volume>(r, {
      storagePath: this.storage.path,
      log: this.log,
      op: (site, epoch, fn) => this.replicaOp(site, epoch, fn),
      persistSource: (v, from) => this.persist(v, { source: from }),
      writer: (v, rel) => this.writer(v, rel),
      copyReplaced: (site) => this.vault.copyReplaced(site),
      frozenHeld: (site, lastFrame) => this.testHooks.frozenHeld(site, lastFrame),
    });
    return r;
  }
}

/** A primary volume that does not ship: its databases, none of them replicated. */
function unreplicatedDatabases(dir: string): DatabaseStatus[] {
  return listDatabases(dir).map((rel) => {
    const mode = readDatabaseHeader(path.join(dir, rel)).mode;
    return {
      path: rel,
      mode: mode === 'missing' ? 'not-sqlite' : mode,
      method: 'none',
      state: 'none',
      protected: false,
      lagMs: 0,
      reason: 'the volume has no replica',
    };
  });
}

function checkSite(site: string): void {
  if (!SITE_RE.test(site)) throw new UnderstudyError('US_BAD_REQUEST', `"${site}" is not a site name (letters, digits, '.', '_', '-')`);
}

/** Creates a volume from a seed (or empty) in a temp dir, checks it, then renames it into place. */
async function createVolume(dir: string, seed?: string): Promise<void> {
  const tmp = tempPathFor(dir);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  try {
    if (seed) {
      const missing = seedProblem(seed, path.basename(dir));
      if (missing) throw missing;
      await fsp.cp(seed, tmp, { recursive: true, errorOnExist: false, force: true, preserveTimestamps: true });
    } else {
      await fsp.mkdir(tmp, { recursive: true });
    }
    const problems = checkVolumeDatabases(tmp).map((p) => p.replace(tmp, dir));
    if (problems.length > 0) throw new UnderstudyError('US_VOLUME_NOT_DATABASE', problems[0]!, { problems });
    await fsp.rename(tmp, dir);
    await fsyncDir(path.dirname(dir));
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
