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
}

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
export interface TransformRequest { epoch: number; rules: { file: string; set: Record<string, unknown> }[] }
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
}

/** PUT /v1/routes/:site with RouteTable — 409 US_STALE_EPOCH if epoch < current. */

export interface UpstreamStats {
  upstream: string;
  requests: number;
  errors5xx: number;
  connErrors: number;
  lastConnErrorAt: number | null;
  latencyMs: { p50: number; p95: number; p99: number; count: number };
}

export interface SiteStats {
  site: string;
  epoch: number;
  held: number;
  heldTimedOut: number;
  upstreams: UpstreamStats[];
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
