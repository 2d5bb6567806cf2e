import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { StorageConfig, UnderstudyConfig } from '../../config/types.ts';
import type { RestoreProgress, RestoreResponse, VaultPoint, VerificationProblem, VerificationResult, VolumeRole } from '../../shared/contracts.ts';
import { UnderstudyError } from '../../shared/errors.ts';
import { parseBody, type JsonRouter } from '../../shared/http-json.ts';
import { tempPathFor } from '../fs-durable.ts';
import { KeyedLock } from '../keyed-lock.ts';
import { volumePath } from '../volume-meta.ts';
import { DEFAULT_CHUNK_BYTES } from './chunking.ts';
import { LATEST_GOOD, fetchVerifiedPoint } from './fetch-point.ts';
import { isPointId } from './point-id.ts';
import { BackupSchedule, backupTickFor } from './backup-schedule.ts';
import { takePoint } from './take-point.ts';
import { VaultClient } from './vault-client.ts';
import { registerVaultRoutes } from './vault-routes.ts';
import { VaultStore } from './vault-store.ts';
import { captureVolume, type CaptureKnowledge } from './volume-capture.ts';
import { verifyVolume } from './volume-verifier.ts';

/** How long a damaged live check result is shown at least, before a good one replaces it. */
const DAMAGE_SHOWN_MS = 2000;
import { background } from '../../shared/background.ts';

/**
 * Backups, verification and restore inside one storage processor:
 *  - on a processor holding a site's PRIMARY volume whose site has `volume.backup`:
 *    takes a restore point into the vault `backup.to` every `everyMs` (and on
 *    POST /v1/volumes/:site/backup-now), keeping the newest `keep`;
 *  - verifies every volume it holds every `verifyEveryMs` and on POST
 *    /v1/volumes/:site/verify; the latest result is in the volume's status;
 *  - restores a point onto this storage system (POST /v1/volumes/:site/restore);
 *  - on the vault (`backup: true`): the store and its endpoints (vault-routes.ts).
 * The processor provides the volume operations it alone may do (VaultHost).
 */
export interface VaultServiceOptions {
  /** Scheduled verification of every volume held; 0 turns it off. @default 10_000 */
  verifyEveryMs?: number;
  /**
   * How often due backups are looked for, at most; the tick used is a tenth of the
   * shortest `backup.every` (≥ 50 ms) when that is shorter (backup-schedule.ts). 0 turns
   * scheduled backups off. @default 1000
   */
  backupTickMs?: number;
  /** Chunk size of new restore points. @default 64 KiB */
  chunkBytes?: number;
  /** On the vault: see VaultStoreOptions.gcGraceMs. @default 1 h */
  gcGraceMs?: number;
}

export interface VaultHost {
  readonly config: UnderstudyConfig;
  readonly name: string;
  readonly storage: StorageConfig;
  readonly log: Logger;
  /** Sites with a volume here. */
  sites(): string[];
  volumeInfo(site: string): { role: VolumeRole; epoch: number; dir: string } | undefined;
  /** The processor's withVolumeQuiesced: no command or replication write runs meanwhile. */
  withVolumeQuiesced<T>(site: string, fn: (dir: string) => Promise<T>): Promise<T>;
  /** Under the volume lock: refuse a stale epoch, put `fromDir` in place as the primary at `epoch`. */
  installRestored(site: string, epoch: number, fromDir: string): Promise<void>;
  /** What is known of a database of the site's primary copy here: what was shipped and confirmed (see volume-capture.ts). */
  copyKnowledge?(site: string, rel: string): CaptureKnowledge;
}

/** Points the vault verifies per site per verification round (verifyNewPoints). */
const POINTS_PER_ROUND = 2;

const backupNowSchema = z.object({ vaultUrl: z.string().url().optional(), keep: z.number().int().positive().optional() }).optional();
const restoreSchema = z.object({
  epoch: z.number().int().nonnegative(),
  point: z.string().refine((p) => p === LATEST_GOOD || isPointId(p), `must be a point id or '${LATEST_GOOD}'`),
  vaultUrl: z.string().url(),
});

export class VaultService {
  private store: VaultStore | null = null;
  private readonly verification = new Map<string, VerificationResult>();
  /** The live copy check's latest result per site (live-copy-check.ts), reported apart and merged in `statusOf`. */
  private readonly live = new Map<string, VerificationResult>();
  private readonly restores = new Map<string, RestoreProgress>();
  private readonly lastTakenAt = new Map<string, number>();
  /** Verifications (and a restore's install) of one site run one at a time (not under the volume lock). */
  private readonly work = new KeyedLock();
  /** Backups of one site run one at a time, apart from verifications: a long quick_check does not delay a point. */
  private readonly backups = new KeyedLock();
  private readonly schedule = new BackupSchedule();
  /** Sites whose newest point is being asked of the vault (first look after a start or a change of role). */
  private readonly seeding = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  private stopped = false;
  private readonly opts: Required<VaultServiceOptions>;

  constructor(
    private readonly host: VaultHost,
    opts: VaultServiceOptions = {},
  ) {
    this.opts = { verifyEveryMs: 10_000, backupTickMs: 1000, chunkBytes: DEFAULT_CHUNK_BYTES, gcGraceMs: 3_600_000, ...opts };
  }

  start(): void {
    this.stopped = false;
    if (this.host.storage.backup) {
      this.store = new VaultStore(this.host.storage.path, this.host.log.child({ vault: this.host.name }), { gcGraceMs: this.opts.gcGraceMs });
    }
    if (this.opts.backupTickMs > 0) {
      const everys = Object.values(this.host.config.sites).flatMap((c) => (c.volume.backup ? [c.volume.backup.everyMs] : []));
      this.every(backupTickFor(everys, this.opts.backupTickMs), async () => {
        this.backupDueSites();
      });
    }
    if (this.opts.verifyEveryMs > 0) this.every(this.opts.verifyEveryMs, () => this.verifyAll());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await Promise.allSettled([...this.inflight]);
  }

  /**
   * The fields this service adds to a VolumeStatus. `verification` is the latest full
   * verification and the latest live copy check together: ok only when both are (or the
   * one that exists is), with the live check's problems first.
   */
  statusOf(site: string): { verification?: VerificationResult; restore?: RestoreProgress } {
    const full = this.verification.get(site);
    const live = this.live.get(site);
    const v: VerificationResult | undefined =
      full && live
        ? { ok: full.ok && live.ok, problems: [...live.problems, ...full.problems], checkedAt: Math.max(full.checkedAt, live.checkedAt), ms: full.ms + live.ms }
        : (full ?? live);
    const r = this.restores.get(site);
    return { ...(v ? { verification: v } : {}), ...(r ? { restore: r } : {}) };
  }

  /**
   * The live copy check's result for `site` (null: no live copy here any more). A new
   * failure is logged once. `found` marks a failure found outside a round (a replica's
   * WAL refused at a fold): it stands until the next round, which sees the same damage.
   */
  noticeLiveCheck(site: string, result: VerificationResult | null, found = false): void {
    const before = this.live.get(site);
    if (result === null) {
      this.live.delete(site);
      return;
    }
    // Damage stays visible for a while even when the copy is repaired at once (a replica
    // that found it while folding its WAL is re-seeded within a second): the controller,
    // which polls every 250 ms, must see it to tell the operator.
    if (result.ok && before && !before.ok && Date.now() - before.checkedAt < DAMAGE_SHOWN_MS) return;
    if (!found || !before || before.ok) this.live.set(site, result);
    if (!result.ok && before?.ok !== false) {
      const info = this.host.volumeInfo(site);
      this.host.log.error({ site, role: info?.role, problems: result.problems }, 'live copy check: the copy is damaged');
    }
  }

  /** A replica's database was replaced by a new generation (re-seeded): its last full verification no longer applies. */
  copyReplaced(site: string): void {
    if (this.host.volumeInfo(site)?.role === 'replica') this.verification.delete(site);
  }

  register(r: JsonRouter): void {
    registerVaultRoutes(r, this.host.name, () => this.store);
    r.on('POST', '/v1/volumes/:site/backup-now', (q) => {
      const b = parseBody(backupNowSchema, q.body);
      return this.track(this.backup(q.params.site!, b?.vaultUrl, b?.keep));
    });
    r.on('POST', '/v1/volumes/:site/verify', (q) => this.track(this.verify(q.params.site!)));
    r.on('POST', '/v1/volumes/:site/restore', (q) => {
      const b = parseBody(restoreSchema, q.body);
      return this.track(this.restore(q.params.site!, b.epoch, b.point, b.vaultUrl));
    });
  }

  // ------------------------------------------------------------ backup

  /** Takes a restore point of the primary volume of `site` now. */
  backup(site: string, vaultUrl?: string, keep?: number): Promise<VaultPoint> {
    const cfg = this.host.config.sites[site]?.volume.backup;
    const url = vaultUrl ?? (cfg ? this.vaultUrlOf(cfg.to) : undefined);
    const k = keep ?? cfg?.keep;
    if (!url || !k)
      throw new UnderstudyError(
        'US_NOT_CONFIGURED',
        `site ${site} has no volume.backup in ${this.host.config.file}: set sites.${site}.volume.backup, or give vaultUrl and keep`,
      );
    this.schedule.started(site);
    return this.backups
      .run(site, async () => {
        const t0 = performance.now();
        // The point's time is stamped BEFORE the capture begins: every write committed before
        // `takenAt` is in the point (each database's read transaction starts after it), so
        // "acknowledged before the point's time" means "restored by it". Unique per site.
        const takenAt = Math.max(Date.now(), (this.lastTakenAt.get(site) ?? 0) + 1);
        this.lastTakenAt.set(site, takenAt);
        // Capture under the volume lock: the role, epoch and directory cannot change meanwhile.
        const { captured, epoch } = await this.host
          .withVolumeQuiesced(site, async (dir) => {
            const info = this.host.volumeInfo(site);
            if (info?.role !== 'primary')
              throw new UnderstudyError(
                'US_VOLUME_ROLE',
                `volume ${site} on storage ${this.host.name} is not the primary: restore points are taken where the primary is`,
              );
            const knowledge = this.host.copyKnowledge ? (rel: string) => this.host.copyKnowledge!(site, rel) : undefined;
            return { captured: await captureVolume(dir, knowledge), epoch: info.epoch };
          })
          .catch((e: unknown) => {
            this.noticeRefusedPoint(site, e);
            throw e;
          });
        const r = await takePoint({
          site,
          captured,
          epoch,
          source: this.host.name,
          vault: new VaultClient(url),
          keep: k,
          chunkBytes: this.opts.chunkBytes,
          takenAt,
          log: this.host.log,
        }).catch((e: unknown) => {
          this.noticeRefusedPoint(site, e);
          throw e;
        });
        this.host.log.info({ site, point: r.point.id, ms: Math.round(performance.now() - t0) }, 'backup done');
        return r.point;
      })
      .finally(() => this.schedule.finished(site));
  }

  /**
   * A point refused because the volume is damaged (a database image that fails quick_check,
   * the volume directory gone, a database missing) is a failed verification of the primary
   * found by the backup, every `backup.every` rather than every `verifyEveryMs`: it is
   * recorded as the volume's latest verification at once, so the controller raises
   * corruption-detected without waiting for the next scheduled check.
   */
  private noticeRefusedPoint(site: string, e: unknown): void {
    const d = e instanceof UnderstudyError ? (e.details as { problem?: VerificationProblem; problems?: VerificationProblem[] } | undefined) : undefined;
    const problems = d?.problems ?? (d?.problem ? [d.problem] : []);
    if (problems.length === 0) return;
    this.verification.set(site, { ok: false, problems, checkedAt: Date.now(), ms: 0 });
    this.host.log.error({ site, problems }, 'the primary volume is damaged (found while taking a restore point)');
  }

  private vaultUrlOf(storageName: string): string | undefined {
    const s = this.host.config.storage[storageName];
    return s ? `http://${s.listen.host}:${s.listen.port}` : undefined;
  }

  /**
   * Every tick: starts a point for each primary here whose site's `everyMs` has passed
   * since its previous point STARTED (backup-schedule.ts). Sites do not wait for each
   * other; a failure is logged and the next attempt comes `everyMs` later.
   */
  private backupDueSites(): void {
    for (const site of this.host.sites()) {
      if (this.stopped) return;
      const cfg = this.host.config.sites[site]?.volume.backup;
      if (!cfg || this.host.volumeInfo(site)?.role !== 'primary') {
        this.schedule.forget(site);
        continue;
      }
      if (this.busy(site) || this.schedule.isRunning(site)) continue;
      const url = this.vaultUrlOf(cfg.to);
      if (!url) continue;
      if (!this.schedule.knows(site)) {
        // First look after a start (or after the volume became primary here): the vault
        // knows when the newest point was taken; with none, the first point is due now.
        if (this.seeding.has(site)) continue;
        this.seeding.add(site);
        background(
          this.track(new VaultClient(url, 5000).points(site).catch(() => []))
            .then((pts) => this.schedule.seed(site, pts[0]?.takenAt ?? 0))
            .finally(() => this.seeding.delete(site)),
        );
        continue;
      }
      if (!this.schedule.due(site, cfg.everyMs)) continue;
      void this.track(this.backup(site)).catch((e: Error) => this.host.log.error({ site, err: e.message }, 'scheduled backup failed'));
    }
  }

  // ------------------------------------------------------------ verification

  verify(site: string): Promise<VerificationResult> {
    const info = this.host.volumeInfo(site);
    if (!info) throw new UnderstudyError('US_NOT_FOUND', `storage ${this.host.name} holds no volume for site ${site}`);
    return this.work.run(site, async () => {
      const cur = this.host.volumeInfo(site) ?? info;
      const result = await verifyVolume({
        dir: cur.dir,
        role: cur.role,
        quiesce: (fn) => this.host.withVolumeQuiesced(site, fn),
        baselineFile: this.baselineFile(site),
      });
      this.verification.set(site, result);
      if (!result.ok) this.host.log.error({ site, role: cur.role, problems: result.problems }, 'volume verification found problems');
      return result;
    });
  }

  /**
   * Verification right before a promotion. The processor calls it under the volume lock,
   * after folding the replica's WAL into its databases: nothing is appended meanwhile,
   * so the databases are checked in place (quick_check) and the plain files against the
   * record of the previous verifications. Recorded as the volume's latest verification
   * (so the controller sees a failure as corruption-detected). Must not take `work`:
   * a scheduled verification holds it while it waits for the volume lock.
   */
  async verifyForPromotion(site: string, dir: string, unfolded: VerificationProblem[] = []): Promise<VerificationResult> {
    const checked = await verifyVolume({ dir, role: 'primary', quiesce: (fn) => fn(dir), baselineFile: this.baselineFile(site) });
    // Databases whose WAL did not hold what the replica acknowledged were not folded (see StorageProcessor.foldDatabases).
    const result = unfolded.length > 0 ? { ...checked, ok: false, problems: [...unfolded, ...checked.problems] } : checked;
    this.verification.set(site, result);
    if (!result.ok) this.host.log.error({ site, problems: result.problems }, 'the replica failed verification before promotion: not promoted');
    return result;
  }

  private baselineFile(site: string): string {
    return path.join(this.host.storage.path, 'verify', `${site}.json`);
  }

  private async verifyAll(): Promise<void> {
    for (const site of this.host.sites()) {
      if (this.stopped) return;
      const info = this.host.volumeInfo(site);
      if (!info || info.role === 'none' || this.busy(site)) continue;
      await this.verify(site).catch((e: Error) => this.host.log.warn({ site, err: e.message }, 'scheduled verification failed'));
    }
    if (this.store) await this.verifyNewPoints(this.store);
  }

  /**
   * On the vault: verifies points never verified yet, newest first, at most
   * POINTS_PER_ROUND per site per round (each is rebuilt in a temp directory), so that
   * retention knows which points are bad and `backups` shows them.
   */
  private async verifyNewPoints(store: VaultStore): Promise<void> {
    for (const site of await store.sites()) {
      for (const id of (await store.unverified(site)).slice(0, POINTS_PER_ROUND)) {
        if (this.stopped) return;
        await store
          .verifyPoint(site, id)
          .catch((e: Error) => this.host.log.warn({ site, point: id, err: e.message }, 'scheduled verification of a restore point failed'));
      }
    }
  }

  // ------------------------------------------------------------ restore

  async restore(site: string, epoch: number, point: string, vaultUrl: string): Promise<RestoreResponse> {
    const t0 = performance.now();
    const info = this.host.volumeInfo(site);
    if (info && (epoch < info.epoch || (epoch === info.epoch && info.role === 'primary'))) {
      throw new UnderstudyError(
        'US_STALE_EPOCH',
        `restore of ${site} at epoch ${epoch}: storage ${this.host.name} has seen epoch ${info.epoch}${info.role === 'primary' ? ' (primary here)' : ''}; restore with a higher epoch`,
        { epoch: info.epoch },
      );
    }
    if (this.busy(site))
      throw new UnderstudyError(
        'US_SITE_BUSY',
        `a restore of ${site} is already running on storage ${this.host.name}: wait for it (understudy events --follow)`,
      );
    const log = this.host.log.child({ site, restore: point });
    const progress = (p: RestoreProgress): void => {
      this.restores.set(site, p);
    };
    progress({ state: 'fetching', bytesDone: 0, bytesTotal: 0 });
    // Rebuilt beside volumes/<site> (same file system): the install is a rename.
    const tmp = tempPathFor(volumePath(this.host.storage.path, site));
    try {
      const got = await fetchVerifiedPoint({ site, point, vault: new VaultClient(vaultUrl), intoDir: tmp, log, onProgress: progress });
      const m = got.manifest;
      progress({ state: 'installing', point: m.id, bytesDone: m.bytes, bytesTotal: m.bytes });
      await this.work.run(site, async () => {
        await this.host.installRestored(site, epoch, tmp);
        await fsp.rm(this.baselineFile(site), { force: true });
        this.verification.delete(site);
        this.live.delete(site);
      });
      const ms = Math.round(performance.now() - t0);
      progress({ state: 'done', point: m.id, bytesDone: m.bytes, bytesTotal: m.bytes });
      log.info(
        { point: m.id, takenAt: m.takenAt, bytes: m.bytes, epoch, ms, skipped: got.skipped.map((s) => s.id) },
        'restore done: the volume is primary here',
      );
      return { point: m.id, takenAt: m.takenAt, bytes: m.bytes, ms, skipped: got.skipped };
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true });
      const prev = this.restores.get(site);
      progress({
        state: 'failed',
        ...(prev?.point ? { point: prev.point } : {}),
        bytesDone: prev?.bytesDone ?? 0,
        bytesTotal: prev?.bytesTotal ?? 0,
        error: (e as Error).message,
      });
      log.error({ err: (e as Error).message }, 'restore failed');
      throw e;
    }
  }

  private busy(site: string): boolean {
    const r = this.restores.get(site)?.state;
    return r === 'fetching' || r === 'verifying' || r === 'installing';
  }

  // ------------------------------------------------------------ timers

  private every(ms: number, fn: () => Promise<void>): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.stopped) return;
      running = true;
      void this.track(fn())
        .catch(() => undefined)
        .finally(() => {
          running = false;
        });
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.catch(() => undefined).finally(() => this.inflight.delete(p));
    return p;
  }
}
