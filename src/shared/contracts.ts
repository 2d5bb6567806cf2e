import type { RenderedRule } from '../transform/render-rules.ts';

/**
 * The HTTP/JSON contracts between Understudy's processes. Every part talks
 * HTTP/JSON, on loopback in the embedded default and across machines the same way.
 * Every command that changes who may write carries the site's `epoch`; a part that
 * has seen a higher epoch for that site refuses it with 409 `US_STALE_EPOCH`.
 */

// ---------------------------------------------------------------- storage processor
// `understudy storage --name NAME -c FILE` listens on storage.NAME.listen.
// A volume lives at `<storage.path>/volumes/<site>/`; its meta at `<storage.path>/meta/<site>.json`.

export type VolumeRole = 'primary' | 'replica' | 'none';
export type ReplicationState = 'streaming' | 'snapshotting' | 'stopped' | 'error' | 'none';

export interface VolumeStatus {
  site: string;
  role: VolumeRole;
  epoch: number;
  /** Absolute directory of the volume (DATA_DIR of the site's app on a host attached here). */
  path: string;
  /** Only on a primary that ships to a replica. */
  replication?: {
    to: string;
    state: ReplicationState;
    /** Age of the oldest change not yet confirmed by the replica; 0 when caught up. */
    lagMs: number;
    generation: number;
    lastError?: string;
    /**
     * How each database's current generation reached the replica: `full` (the whole
     * image) or `differential` (the replica held an older copy — failback — and only
     * the differing pages were sent), with the bytes sent. One entry per database.
     */
    seeds?: GenerationSeed[];
    /** Bytes of plain files (not databases) sent since this replication started. */
    fileBytesSent?: number;
    /**
     * The worst lag of the last 2 s (at least `lagMs`): a database shipped by snapshots
     * lags by up to one image's time just before each image lands and by 0 right after,
     * so `lagMs` alone understates what a crash at a random instant loses. What the
     * failover reports as the lag at failure.
     */
    lagPeakMs?: number;
    /** Which database (its path) or `files` `lagPeakMs` is that of. Absent when caught up. */
    lagOf?: string;
    /** Every database of the volume: how it is replicated, and whether it is protected. */
    databases?: DatabaseStatus[];
  };
  /** On a primary that does not ship (no replica): its databases, all `method: none`. */
  databases?: DatabaseStatus[];
  /** Only on a replica: when the last batch from the primary was applied (epoch ms). */
  lastAppliedAt?: number;
  /**
   * Only on a primary in sync mode (its site says `replication: sync`, or a director
   * asked for a sync barrier): `degraded` while writes are released before the replica
   * confirms them (onReplicaLost: degrade, after a timeout); back to `sync` once the
   * replica has caught up. `since` is when the state last changed (epoch ms).
   */
  sync?: VolumeSyncState;
  /** The latest verification of this volume (scheduled or on demand). */
  verification?: VerificationResult;
  /** A restore into this storage system in progress, or the last one. */
  restore?: RestoreProgress;
  /** On a primary, the reader copies its storage processor feeds. */
  readers?: ReaderShippingStatus[];
}

/**
 * Scale reads out. The primary's storage ships the site's `volume.readonly`
 * portion to a reader host's storage system (src/storage/reader-shipping.ts):
 *   POST /v1/volumes/:site/readers            { epoch, to: { name, url } } → ReaderShippingStatus[]
 *   POST /v1/volumes/:site/readers/stop       { epoch, to: name }
 *   POST /v1/volumes/:site/readers/catch-up   { timeoutMs, to? } → { readers } once every reader
 *        copy (or `to`) serves everything committed before the call; 504 US_TIMEOUT otherwise.
 * The reader's storage keeps the copy (src/storage/reader-copies.ts):
 *   POST /v1/reader/:site/{hello,snapshot/chunk,snapshot/commit,frames,files}  (the replica protocol)
 *   POST /v1/readers/:site/transform { epoch, rules } → TransformResponse
 *   POST /v1/readers/:site/drop      { epoch } → { dropped }
 *   GET  /v1/readers/:site → ReaderCopyStatus
 */
export interface ReaderShippingStatus {
  to: string;
  state: ReplicationState;
  lagMs: number;
  lastError?: string;
}
export interface ReaderCopyStatus {
  site: string;
  epoch: number;
  /** The storage system that feeds it. */
  source: string | null;
  /** The reader app's DATA_DIR. */
  path: string;
  /** When the last batch was published to the served directory (epoch ms). */
  publishedAt: number | null;
  databases: string[];
}

/** How one database's replication generation was seeded on the replica (VolumeStatus.replication.seeds). */
export interface GenerationSeed {
  db: string;
  generation: number;
  kind: 'full' | 'differential';
  /** Bytes of database content sent for the generation: differing pages (or the whole image) plus the WAL part. */
  bytesSent: number;
  /** Size of the database image. */
  dbBytes: number;
  /** Size of the WAL part sent with it (header + frames already committed). */
  walBytes: number;
  /** Pages of the image, and pages sent. */
  blocks: number;
  blocksSent: number;
  /** Why a differential generation was not used or fell back to a full copy. */
  fallback?: string;
  /** When it was installed (epoch ms). */
  at: number;
}

/**
 * One SQLite database of a volume (found by its header, whatever its name) on the primary.
 *
 * `mode` is the journal mode its header records: `wal`, `rollback` (a rollback journal:
 * DELETE, TRUNCATE, PERSIST, MEMORY or OFF), `empty` (created, never written) or
 * `not-sqlite` (named like a database, not one: damaged).
 * `method` is how it reaches the replica: `wal-frames` (verbatim WAL frames, continuous),
 * `snapshots` (a consistent image after each change: rollback-journal mode, or switched
 * to WAL mode by Understudy and not written in it yet — see `reason`), `none`.
 * In sync mode both methods are held per write: the barrier waits for the frames, or for
 * a snapshot taken after the write (one image per barrier round: slow for large
 * databases, whose barrier then times out and the volume's sync state says `degraded`).
 * `protected` is false when its changes are not reaching the replica (`state: error`,
 * or `not-sqlite`): the site is then reported `degraded` and an event names the file.
 * `lagMs` is the age of its oldest change the replica does not hold.
 */
export interface DatabaseStatus {
  /** Path relative to the volume. */
  path: string;
  mode: 'wal' | 'rollback' | 'empty' | 'not-sqlite';
  method: 'wal-frames' | 'snapshots' | 'none';
  state: ReplicationState;
  protected: boolean;
  lagMs: number;
  /** Understudy switched it from rollback-journal to WAL mode before the app opened it (seed, promotion, restore). */
  switchedToWal?: boolean;
  /** Why it is shipped (or not) this way. */
  reason?: string;
  lastError?: string;
  /** Snapshots: the worst lag of the last 2 s (see VolumeStatus.replication.lagPeakMs). */
  lagPeakMs?: number;
  /** Snapshots: images acknowledged since replication started, and the last one's time (image to acknowledgment). */
  snapshots?: number;
  lastSnapshotMs?: number;
}

export interface VolumeSyncState {
  state: 'sync' | 'degraded';
  since: number;
  reason?: string;
}

export type SyncReplicaLost = 'degrade' | 'strict';

/**
 * POST /v1/volumes/:site/sync-barrier — the director, after a primary answered a
 * modifying request: "is everything this volume's databases had committed by now on
 * the replica's disk?" Waits at most `timeoutMs`; concurrent barriers share one
 * ship/ack round trip. Always 200 with SyncBarrierResponse (400/404 on bad input):
 *   sync      confirmed: release the answer;
 *   degraded  not confirmed, and onReplicaLost is degrade: release it anyway (the
 *             volume's `sync.state` is `degraded`; later barriers answer at once);
 *   timeout   not confirmed within timeoutMs, onReplicaLost is strict: answer 503
 *             US_SYNC_TIMEOUT instead.
 * Covers every SQLite database of the volume: WAL-mode ones by their frames, the others
 * by a snapshot taken after the call (DatabaseStatus); plain files are replicated
 * asynchronously.
 */
export interface SyncBarrierRequest {
  onReplicaLost: SyncReplicaLost;
  timeoutMs: number;
}
export interface SyncBarrierResponse {
  state: 'sync' | 'degraded' | 'timeout';
  waitedMs: number;
  reason?: string;
}

/**
 * What a part's fencing gate has done (src/shared/fencing.ts): the highest token seen,
 * and the commands it refused for a lower one, with the newest. The leading controller
 * records a refusal it reads here as a `stale-leader-refused` event.
 */
export interface FencingView {
  highest: number;
  refused: number;
  lastRefused: { token: number; highest: number; method: string; url: string; at: number } | null;
}

export interface StorageStatus {
  name: string;
  volumes: VolumeStatus[];
  /** Absent from a storage processor that has seen no fencing token. */
  fencing?: FencingView;
  /** The reader copies this storage system holds for reader hosts. */
  readerCopies?: ReaderCopyStatus[];
}

/** POST /v1/volumes/:site/init — create the volume from a seed if it does not exist; become primary at epoch. */
export interface InitVolumeRequest {
  epoch: number;
  seed?: string;
}

/** POST /v1/volumes/:site/replicate — ship this (primary) volume to another storage system. */
export interface ReplicateRequest {
  epoch: number;
  to: { name: string; url: string };
}

/** POST /v1/volumes/:site/promote — this replica becomes the primary copy at `epoch` (> its current). Idempotent. */
export interface PromoteRequest {
  epoch: number;
}
export interface PromoteResponse {
  site: string;
  epoch: number;
  role: 'primary';
  lastAppliedAt?: number;
}

/** POST /v1/volumes/:site/demote — stop shipping; the copy here is no longer primary (fenced at epoch). */
export interface DemoteRequest {
  epoch: number;
}

/** POST /v1/volumes/:site/transform — apply rendered rules to the volume; returns what changed. */
export interface TransformRequest {
  epoch: number;
  rules: RenderedRule[];
}
export interface TransformChange {
  file: string;
  key: string;
  from: unknown;
  to: unknown;
}
export interface TransformResponse {
  changes: TransformChange[];
}

// ---------------------------------------------------------------- vault
// Restore points of volumes, kept by the storage processor whose config says
// `backup: true`. A restore point is a manifest of files cut into content-addressed
// chunks (sha256); chunks are stored once and shared by every point that holds them.

/** One problem a verification found. `file` is relative to the volume (or the point). */
export interface VerificationProblem {
  file: string;
  /**
   * quick-check   SQLite's `PRAGMA quick_check` found the database damaged (or could not open it)
   * checksum      a plain file's content changed while its size and mtime did not (silent damage)
   * chunk-missing a chunk of a restore point is not in the vault
   * chunk-corrupt a chunk's content does not match its sha256
   * file-hash     a rebuilt file does not match the sha256 in its manifest
   * unreadable    the file could not be read or copied
   * wal-frame     a committed WAL frame (below the WAL index's end, or what was shipped and
   *               confirmed) no longer verifies, or the WAL lost or rewrote committed frames:
   *               a fresh open would drop the commits from there on (src/storage/wal-chain-check.ts)
   * page          a page of the database file differs from what was shipped (src/storage/page-record.ts)
   */
  kind: 'quick-check' | 'checksum' | 'chunk-missing' | 'chunk-corrupt' | 'file-hash' | 'unreadable' | 'wal-frame' | 'page';
  detail: string;
}

/**
 * POST /v1/volumes/:site/verify (body empty) and POST /v1/vault/:site/points/:id/verify
 * → VerificationResult. `checkedAt` is when the check finished (epoch ms), `ms` its duration.
 */
export interface VerificationResult {
  ok: boolean;
  problems: VerificationProblem[];
  checkedAt: number;
  ms: number;
}

/** A restore in progress (or the last one) on a target storage processor. */
export interface RestoreProgress {
  state: 'fetching' | 'verifying' | 'installing' | 'done' | 'failed';
  /** The point being fetched (with 'latest-good': the one being tried). */
  point?: string;
  bytesDone: number;
  bytesTotal: number;
  error?: string;
}

/** One file of a restore point: its chunks in order; the last may be short. */
export interface PointFile {
  path: string;
  /** `db`: an SQLite database image taken inside a read transaction; `file`: a plain file. */
  kind: 'db' | 'file';
  size: number;
  mode: number;
  mtimeMs: number;
  sha256: string;
  chunks: string[];
}

/** `<vault.path>/points/<site>/<id>.json`. `id` is the ISO time with ':' as '-' (sorts by time). */
export interface PointManifest {
  version: 1;
  site: string;
  id: string;
  takenAt: number;
  /** The site's epoch on the source when the point was taken; the vault refuses a lower one than it holds. */
  epoch: number;
  /** The storage system that took it. */
  source: string;
  chunkBytes: number;
  files: PointFile[];
  /** Sum of the files' sizes. */
  bytes: number;
  /** Bytes of chunks that no other point of the site held when it was stored (set by the vault). */
  newBytes: number;
}

/** GET /v1/vault/:site/points → VaultPoint[], newest first. */
export interface VaultPoint {
  id: string;
  takenAt: number;
  epoch: number;
  bytes: number;
  newBytes: number;
  files: number;
  /**
   * The vault's latest verification of the point (absent: not verified yet). A point with
   * `ok: false` does not count toward `keep`, and a restore of 'latest-good' skips it.
   */
  verification?: { ok: boolean; checkedAt: number; problem?: string };
}

/** POST /v1/vault/:site/has { hashes } → { missing }: the chunks the vault does not hold yet. */
export interface VaultHasRequest {
  hashes: string[];
}
export interface VaultHasResponse {
  missing: string[];
}

/**
 * PUT /v1/vault/chunks/:hash (application/octet-stream, ≤ 4 MiB) → { stored: boolean }; 400 when
 * the body's sha256 is not :hash. GET /v1/vault/chunks/:hash → the bytes (octet-stream).
 * POST /v1/vault/:site/points { manifest: PointManifest (newBytes ignored), keep } → VaultPoint:
 * every chunk must be in the vault; then the site's points beyond the newest `keep` are
 * deleted and chunks no point references are collected.
 * GET /v1/vault/:site/points/:id → PointManifest.
 */
export interface VaultCommitRequest {
  manifest: PointManifest;
  keep: number;
}

/**
 * POST /v1/volumes/:site/backup-now on the processor holding the primary → VaultPoint.
 * Body optional: the vault and retention default to the site's `volume.backup`.
 */
export interface BackupNowRequest {
  vaultUrl?: string;
  keep?: number;
}

/**
 * POST /v1/volumes/:site/restore on the TARGET processor. `point` is a point id or
 * 'latest-good' (newest first, the first that verifies). 409 US_STALE_EPOCH when
 * `epoch` is lower than the one this processor has seen for the site, or equal while
 * the volume is primary here. The restored volume becomes primary at `epoch`; a copy
 * already there is moved aside to `stale/`.
 */
export interface RestoreRequest {
  epoch: number;
  point: string;
  vaultUrl: string;
}
export interface RestoreResponse {
  point: string;
  takenAt: number;
  bytes: number;
  ms: number;
  /** With 'latest-good': newer points that failed verification, and why. */
  skipped: { id: string; problems: VerificationProblem[] }[];
}

// ---------------------------------------------------------------- director
// `understudy director -c FILE` listens on director.listen (admin) and on every site's front.

export interface RouteTable {
  site: string;
  epoch: number;
  /** host:port of the current-epoch primary, or null: hold requests (failover in progress). */
  primary: string | null;
  /** host:port of read-only hosts (GET/HEAD/OPTIONS only). */
  readers: string[];
  /**
   * Sync mode (the site's `volume.replication: sync`), or null/absent for async. The
   * director holds the answer of every modifying request (POST, PUT, PATCH, DELETE)
   * the primary answered with a status < 500 until `storageUrl` (the storage processor
   * holding the primary volume) confirms the write is on the replica's disk
   * (POST {storageUrl}/v1/volumes/:site/sync-barrier). Not confirmed within timeoutMs:
   * `degrade` releases it (counted), `strict` answers 503 US_SYNC_TIMEOUT. A storage
   * processor that cannot be reached counts as not confirmed.
   */
  sync?: { storageUrl: string; onReplicaLost: SyncReplicaLost; timeoutMs: number } | null;
  /**
   * Which request paths readers may serve (`scale.readPaths`): exact paths, or
   * prefixes ending in `*`. Absent: every path (a reader answers 421 for what it cannot
   * serve and the director sends that read to the primary).
   */
  readPaths?: string[];
  /**
   * Read your writes: the storage processor holding the primary volume. The
   * director marks each modifying answer with a cookie carrying a write number, and
   * sends that client's reads to the primary until `storageUrl` confirmed
   * (POST /v1/volumes/:site/readers/catch-up) that every reader copy serves what was
   * committed before the write number was covered. Absent: every read may go to readers.
   */
  ryw?: { storageUrl: string; timeoutMs: number } | null;
}

/** PUT /v1/routes/:site with RouteTable — 409 US_STALE_EPOCH if epoch < current. */

/**
 * The span of `UpstreamStats.recentLatencyMs`: `RECENT_LATENCY_MS` in slots of
 * `RECENT_LATENCY_SLOT_MS`, so it covers the last 750–1000 ms of traffic. Short, because
 * the slowdown detector holds a slowdown for `health.performance.window` + this span
 * (a slow burst stays in a p95 for the span after it ended); quarter-second slots, so
 * that the p95 lets go of old traffic a quarter second at a time.
 */
export const RECENT_LATENCY_MS = 1000;
export const RECENT_LATENCY_SLOT_MS = 250;

export interface UpstreamStats {
  upstream: string;
  requests: number;
  errors5xx: number;
  connErrors: number;
  lastConnErrorAt: number | null;
  /** Over the last ~10 s (the director's whole latency window). */
  latencyMs: { p50: number; p95: number; p99: number; count: number };
  /**
   * Over the last `RECENT_LATENCY_MS` (750–1000 ms of traffic): what the slowdown
   * detector judges, so that a slowdown is seen about `health.performance.window` + 1 s
   * after it began rather than 10 s later.
   */
  recentLatencyMs: { p50: number; p95: number; p99: number; count: number };
  /**
   * Requests sent to this upstream whose answer the client has not got yet (including
   * answers held for the sync barrier). A planned switchover holds new requests, then
   * waits for this to reach 0 on the old primary.
   */
  inflight: number;
  /**
   * Answers in which the app said it sheds load (429, or 503 with Retry-After;
   * src/monitor/load-signal.ts): a sign of load, not an error of the host. Absent
   * from a director that does not count them.
   */
  shed?: number;
  /** Of `shed`, the 503s: they are counted in `errors5xx` too, and the malfunction detector takes them out. */
  shed5xx?: number;
  /**
   * The same answers by kind of request (method and route), so that the controller
   * can tell errors that follow the request from errors of the host
   * (src/monitor/error-attribution.ts). At most 64 kinds per upstream; more are
   * counted under `METHOD *`.
   */
  kinds?: RequestKindStats[];
}

/** One kind of request answered by one upstream, cumulative since the director started. */
export interface RequestKindStats {
  /** `POST /api/orders`: the method, then the path with every segment that holds a digit as `:id` (at most 4 segments, then `/*`). */
  kind: string;
  method: string;
  /** Answers received, any status. */
  requests: number;
  /** 5xx answers that are not load answers. */
  errors: number;
  /** Load answers (429, 503 with Retry-After). */
  shed: number;
  /**
   * The newest failing requests of the kind (path and query, newest last, at most 3),
   * kept only for GET and HEAD without a body: requests the controller may send
   * again to see whether they fail elsewhere too.
   */
  samples?: string[];
}

/** What sync mode did to a site's modifying requests (cumulative since the director started). */
export interface SyncStats {
  /** Answers held for a sync barrier. */
  waits: number;
  /** Of those, released unconfirmed because the volume is (or became) degraded. */
  degraded: number;
  /** Answered 503 US_SYNC_TIMEOUT (strict). */
  timeouts: number;
  /** The storage processor could not be reached or failed (counted in degraded or timeouts too). */
  unreachable: number;
  /** Barrier wait in ms over the last ~10 s. */
  latencyMs: { p50: number; p95: number; p99: number; count: number };
}

export interface SiteStats {
  site: string;
  epoch: number;
  held: number;
  heldTimedOut: number;
  upstreams: UpstreamStats[];
  /** Sync mode counters (the director always reports them; all 0 for async sites). */
  sync?: SyncStats;
}

/** GET /v1/stats → { sites: SiteStats[] } */

/**
 * The director tells the controller at once when it cannot connect to an upstream:
 * POST {controller}/v1/signals with this body (fire and forget).
 */
export interface ConnErrorSignal {
  kind: 'conn-error';
  site: string;
  upstream: string;
  at: number;
  error: string;
}

// ---------------------------------------------------------------- host agent
// `understudy agent --host NAME -c FILE` listens on hosts.NAME.address:agentPort.

export type AppState = 'starting' | 'running' | 'stopped' | 'exited';

export interface AgentAppStatus {
  site: string;
  state: AppState;
  pid: number | null;
  /** The exit code of an `exited` app (128 + n when a signal ended it). */
  exitCode: number | null;
  since: number;
  /** The signal that ended an `exited` app (`SIGKILL`), when one did. */
  signal?: string | null;
  /** Why the program could not be started at all (`spawn nosuchprogram ENOENT`). */
  error?: string;
  /** An `exited` app's last lines of output (stdout and stderr, at most 20 lines / 8 KiB), for the operator. */
  output?: string[];
  /** The file the app's output goes to, on the host. */
  logFile?: string;
}

export interface AgentStatus {
  host: string;
  pid: number;
  pgid: number;
  sites: AgentAppStatus[];
  /** Absent from an agent that has seen no fencing token. */
  fencing?: FencingView;
}

/** PUT /v1/sites/:site — start the site's app (idempotent while running with the same epoch). */
export interface StartAppRequest {
  epoch: number;
  command: string[];
  cwd: string;
  dataDir: string;
  env: Record<string, string>;
  mode: 'rw' | 'ro';
  /**
   * Where the app must listen (the host's address and `app.port`): the agent checks
   * that nothing else holds it before it starts the app (US_APP_PORT_IN_USE).
   */
  listen?: { address: string; port: number };
}
/** DELETE /v1/sites/:site — stop the app (SIGTERM, then SIGKILL after 2 s). */
