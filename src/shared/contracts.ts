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
  };
  /** Only on a replica: when the last batch from the primary was applied (epoch ms). */
  lastAppliedAt?: number;
  /**
   * Only on a primary in sync mode (its site says `replication: sync`, or a director
   * asked for a sync barrier): `degraded` while writes are released before the replica
   * confirms them (onReplicaLost: degrade, after a timeout); back to `sync` once the
   * replica has caught up. `since` is when the state last changed (epoch ms).
   */
  sync?: VolumeSyncState;
}

export interface VolumeSyncState { state: 'sync' | 'degraded'; since: number; reason?: string }

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
 * Covers SQLite databases in WAL mode; plain files are replicated asynchronously.
 */
export interface SyncBarrierRequest { onReplicaLost: SyncReplicaLost; timeoutMs: number }
export interface SyncBarrierResponse { state: 'sync' | 'degraded' | 'timeout'; waitedMs: number; reason?: string }

export interface StorageStatus {
  name: string;
  volumes: VolumeStatus[];
}

/** POST /v1/volumes/:site/init — create the volume from a seed if it does not exist; become primary at epoch. */
export interface InitVolumeRequest { epoch: number; seed?: string }

/** POST /v1/volumes/:site/replicate — ship this (primary) volume to another storage system. */
export interface ReplicateRequest { epoch: number; to: { name: string; url: string } }

/** POST /v1/volumes/:site/promote — this replica becomes the primary copy at `epoch` (> its current). Idempotent. */
export interface PromoteRequest { epoch: number }
export interface PromoteResponse { site: string; epoch: number; role: 'primary'; lastAppliedAt?: number }

/** POST /v1/volumes/:site/demote — stop shipping; the copy here is no longer primary (fenced at epoch). */
export interface DemoteRequest { epoch: number }

/** POST /v1/volumes/:site/transform — apply rendered rules to the volume; returns what changed. */
export interface TransformRequest { epoch: number; rules: RenderedRule[] }
export interface TransformChange { file: string; key: string; from: unknown; to: unknown }
export interface TransformResponse { changes: TransformChange[] }

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
}

/** PUT /v1/routes/:site with RouteTable — 409 US_STALE_EPOCH if epoch < current. */

export interface UpstreamStats {
  upstream: string;
  requests: number;
  errors5xx: number;
  connErrors: number;
  lastConnErrorAt: number | null;
  latencyMs: { p50: number; p95: number; p99: number; count: number };
  /**
   * Requests sent to this upstream whose answer the client has not got yet (including
   * answers held for the sync barrier). A planned switchover holds new requests, then
   * waits for this to reach 0 on the old primary.
   */
  inflight: number;
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
export interface ConnErrorSignal { kind: 'conn-error'; site: string; upstream: string; at: number; error: string }

// ---------------------------------------------------------------- host agent
// `understudy agent --host NAME -c FILE` listens on hosts.NAME.address:agentPort.

export type AppState = 'starting' | 'running' | 'stopped' | 'exited';

export interface AgentAppStatus {
  site: string;
  state: AppState;
  pid: number | null;
  exitCode: number | null;
  since: number;
}

export interface AgentStatus { host: string; pid: number; pgid: number; sites: AgentAppStatus[] }

/** PUT /v1/sites/:site — start the site's app (idempotent while running with the same epoch). */
export interface StartAppRequest {
  epoch: number;
  command: string[];
  cwd: string;
  dataDir: string;
  env: Record<string, string>;
  mode: 'rw' | 'ro';
}
/** DELETE /v1/sites/:site — stop the app (SIGTERM, then SIGKILL after 2 s). */
