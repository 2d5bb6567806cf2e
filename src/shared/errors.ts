/**
 * One registry of error codes. Every error Understudy raises to an operator has a
 * stable `code` (for scripts and tests) and a message that says what to do.
 *
 * Each entry says the condition and what the operator does; `status` is the HTTP status
 * the JSON APIs answer it with (http-json.ts). The director answers a shop's client with
 * its own statuses (503 + Retry-After, director/front-errors.ts). A code received from
 * another part is checked against this table (isErrorCode), never cast.
 */
const REGISTRY = {
  /** The config file has problems, each listed with its place: fix each line (`understudy validate -c FILE`). */
  US_CONFIG_INVALID: { status: 400 },
  /** The config file does not exist, is a directory or cannot be read: pass the right `-c FILE`. */
  US_CONFIG_NOT_FOUND: { status: 500 },
  /** An environment variable Understudy reads has a value it cannot use (the message names it and what it must be). */
  US_BAD_ENV: { status: 500 },
  /** A listener's port is taken: stop what listens there or choose another port in the config. */
  US_PORT_IN_USE: { status: 500 },
  /** `up` on a config that another live `up` runs from the same directory. */
  US_ALREADY_RUNNING: { status: 500 },
  /** A `*.db` file in a volume or in `app.seed` is not an SQLite database: restore it from a copy or remove it. */
  US_VOLUME_NOT_DATABASE: { status: 500 },
  /** A command carried an older epoch than one already accepted: a newer decision is in force (fencing); usually nothing to do. */
  US_STALE_EPOCH: { status: 409 },
  /** A command carried a lower fencing token than a part has seen: a newer controller leads, and the sender must stop acting. */
  US_STALE_LEADER: { status: 409 },
  /** An unknown site, host, storage system, route or restore point: check the name against the config. */
  US_NOT_FOUND: { status: 404 },
  /** A malformed API body or argument (a field of the wrong type, a name or id of the wrong form): the message names the field. */
  US_BAD_REQUEST: { status: 400 },
  /** A part sent a request in a form this version does not speak (another Understudy version): run the same version on every machine. */
  US_PROTOCOL_MISMATCH: { status: 400 },
  /** A host's process group is still alive after SIGKILL: see "When a fence cannot be confirmed" (docs/operations.md). */
  US_FENCE_UNCONFIRMED: { status: 409 },
  /** No host can take the site (none attached to the replica's storage is available, off, held elsewhere, untrusted). */
  US_NO_TARGET: { status: 409 },
  /** The API token or the cluster secret is missing or wrong: set `UNDERSTUDY_TOKEN`, or the same `cluster.secret` everywhere. */
  US_UNAUTHORIZED: { status: 401 },
  /** A secret, token or certificate the config names cannot be read (the message says where it looked). */
  US_CREDENTIALS_UNREADABLE: { status: 500 },
  /** A plain-HTTP call to a part that speaks TLS only (`cluster.tls`). */
  US_TLS_REQUIRED: { status: 400 },
  /** A connection to a part was refused: is it running, is the address right? See its log. */
  US_UNREACHABLE: { status: 502 },
  /** A part, an agent or a site did not answer in time: read the logs the message names. */
  US_TIMEOUT: { status: 504 },
  /** No member of the state store (etcd) answered, or none has a quorum: no automatic action until one does. Check the members (`etcdctl endpoint health --cluster`). */
  US_STATE_STORE_UNAVAILABLE: { status: 502 },
  /** A command sent to a controller that follows (several controllers, one leader): send it to the leader the message names (`understudy status` shows it). */
  US_NOT_LEADER: { status: 503 },
  /** A director has not yet received every site's route from the controller (it just started): it must not take the fronts yet (keepalived's check); the controller's reconcile sends them within about a second. */
  US_DIRECTOR_NOT_READY: { status: 503 },
  /** Replication failed otherwise (a replica cannot publish or fold its copy, a database vanished while shipped): the shipper retries; watch the storage log. */
  US_REPLICATION: { status: 500 },
  /** A replica that fails verification (quick_check, file checksums) when it is to be promoted: not promoted. */
  US_REPLICA_CORRUPT: { status: 500 },
  // A site that does not start names its cause (start-failure.ts); each message says what to do:
  /** `app.seed` names no directory, and the site has no volume yet to start from. */
  US_SEED_MISSING: { status: 500 },
  /** The app's program could not be started at all (not found, not executable). */
  US_APP_SPAWN_FAILED: { status: 500 },
  /** The app exited before it answered its probe: exit code and last lines of output. */
  US_APP_EXITED: { status: 500 },
  /** The app runs but gave no healthy probe answer within `app.startTimeout`: the probe and its last answers. */
  US_APP_NOT_HEALTHY: { status: 500 },
  /** The address and port the app must listen on are taken on its host. */
  US_APP_PORT_IN_USE: { status: 409 },
  /** An unexpected error: read the log the message names. */
  US_INTERNAL: { status: 500 },
  /** bin/understudy.js found no compiled build (dist/): `npm run build`, or `npm ci`, which runs it. */
  US_NOT_BUILT: { status: 500 },
  /** The controller is stopping; a runbook that was waiting stays `running` and resumes at the next start. */
  US_STOPPING: { status: 500 },
  /** A rehearsal (`understudy drill`) that cannot run now (no free spare, a runbook running, …) or gave way to one. */
  US_DRILL_REFUSED: { status: 409 },

  // Operations refused, by condition:
  /** The site already has a runbook running (or a restore of it runs on its storage system): wait for it (`understudy events --follow`). */
  US_SITE_BUSY: { status: 409 },
  /** `--to` names a host that is not one of the site's hosts (primary, standby) or the one it already runs on: name another. */
  US_TARGET_INVALID: { status: 400 },
  /** A switchover of a site that is not serving: wait until it serves, or use failover. */
  US_SITE_NOT_SERVING: { status: 409 },
  /** The request needs what the config does not set (`volume.backup`, `volume.readonly`, a vault storage system): set it, or ask another part. */
  US_NOT_CONFIGURED: { status: 409 },
  /** The copy of a volume on this storage system is not in the role (primary, replica) or epoch the request needs: send it to the right storage system. */
  US_VOLUME_ROLE: { status: 409 },
  /** A program Understudy runs is not installed (openssl for `understudy certs`): install it. */
  US_TOOL_MISSING: { status: 500 },

  // Transforms and templates (docs/configuration.md, sites.<name>.transform):
  /** A template (transform rule, app.command, app.env) cannot be rendered for a host: bad syntax, unknown placeholder, missing or non-numeric profile key. Fix the template or the host's profile. */
  US_TEMPLATE_FAILED: { status: 400 },
  /** A rendered transform cannot be applied to its file: unreadable or invalid file, no format for it, a pattern that does not match exactly once. Fix the rule or the file. */
  US_TRANSFORM_FAILED: { status: 400 },
  /** A path that would lead out of the volume (or drill snapshot): absolute, `..`, empty. Fix the transform's `file`; between parts it means a part sent a bad path. */
  US_UNSAFE_PATH: { status: 400 },

  // Replication and restore points:
  /** Data received does not match its checksum (a vault chunk, a replicated file): damaged in transit; the sender sends it again. */
  US_CHECKSUM_MISMATCH: { status: 400 },
  /**
   * A verification could not run: the thread that checks databases failed twice on it (out of
   * memory, a crash). Nothing is concluded about the data; the next round tries again. If it
   * repeats, see the storage processor's log and its memory.
   */
  US_CHECK_UNAVAILABLE: { status: 500 },
  /** The request needs replication that streams, and the volume does not replicate (or not streaming yet): wait until `status` shows it streaming. */
  US_NOT_REPLICATING: { status: 409 },
  /** Replication of the volume was stopped while the request waited for it (promotion, new replica, shutdown): usually nothing; it restarts. */
  US_REPLICATION_STOPPED: { status: 409 },
  /** A consistent snapshot of a database could not be taken: its write lock stayed held (an app with `locking_mode=EXCLUSIVE`?) or it could not be read. Retried; if it repeats, see the app. */
  US_SNAPSHOT_UNAVAILABLE: { status: 409 },
  /** A database's WAL or WAL index cannot be read consistently (not in WAL mode, header and index disagree, frames that do not verify): retried with a new snapshot; see the storage log. */
  US_WAL_UNREADABLE: { status: 500 },
  /** The replica does not hold what the source continues (generation, frame): the source ships a new generation; nothing to do unless it repeats. */
  US_REPLICA_MISMATCH: { status: 409 },
  /** A database of the volume is damaged or lost (WAL frames lost, quick_check fails, a database gone): nothing is shipped nor backed up from it. Check the live copy check's report; fail over or restore. */
  US_VOLUME_DAMAGED: { status: 500 },
  /** No restore point (or not the one named) verifies: invalid manifest, another site's, damaged or missing chunks. Verify the vault's points; choose another. */
  US_POINT_UNVERIFIED: { status: 500 },
  /** A restore point posted to the vault clashes with what it holds (same id, other content) or names chunks it does not hold: send the chunks first, or a new id. */
  US_POINT_CONFLICT: { status: 409 },

  // Answers the director gives a shop's client (503 + Retry-After), see director/front-errors.ts:
  /** No routable primary within the hold time: the request did not reach the app; send it again. */
  US_HOLD_TIMEOUT: { status: 500 },
  /** Too many requests already wait for a routable primary: send it again. */
  US_HOLD_FULL: { status: 500 },
  /** The connection to the app broke after the request was sent: check before sending it again. */
  US_OUTCOME_UNKNOWN: { status: 500 },
  /** The connection to the app broke twice (or a drill's smoke request failed). */
  US_UPSTREAM_FAILED: { status: 500 },
  /** The director is shutting down: send the request again. */
  US_DIRECTOR_STOPPING: { status: 500 },
  /** A strict sync site's write got no replica confirmation within `sync.timeout`: check the replica (`status`). */
  US_SYNC_TIMEOUT: { status: 500 },
} as const satisfies Record<string, { status: number }>;

export type ErrorCode = keyof typeof REGISTRY;

/** Every code of the registry, at run time. */
export const ERROR_CODES = Object.freeze(Object.keys(REGISTRY) as ErrorCode[]);

const CODES = new Set<string>(ERROR_CODES);

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && CODES.has(x);
}

/** The HTTP status a JSON API answers a code with (500 for a code not in the registry). */
export function statusOf(code: ErrorCode): number {
  return (REGISTRY as Record<string, { status: number } | undefined>)[code]?.status ?? 500;
}

export class UnderstudyError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'UnderstudyError';
    this.code = code;
    this.details = details;
  }
}

export function isUnderstudyError(e: unknown): e is UnderstudyError {
  return e instanceof UnderstudyError;
}

/**
 * The error another part answered (`{ error: { code, message, details } }`), checked
 * against the registry: a code this version does not know becomes US_INTERNAL, and the
 * message keeps it. `fallback` is the message when the answer has none.
 */
export function errorFromReply(reply: { code?: unknown; message?: unknown; details?: unknown } | undefined, fallback: string): UnderstudyError {
  const message = typeof reply?.message === 'string' ? reply.message : fallback;
  const code = reply?.code;
  if (isErrorCode(code)) return new UnderstudyError(code, message, reply?.details);
  const unknown = code === undefined || code === null ? '' : ` [unknown code ${String(code)}]`;
  return new UnderstudyError('US_INTERNAL', `${message}${unknown}`, reply?.details);
}
