/**
 * One registry of error codes. Every error Understudy raises to an operator has a
 * stable `code` (for scripts and tests) and a message that says what to do.
 */
export type ErrorCode =
  | 'US_CONFIG_INVALID'
  | 'US_CONFIG_NOT_FOUND'
  /** An environment variable Understudy reads has a value it cannot use (the message names it and what it must be). */
  | 'US_BAD_ENV'
  | 'US_PORT_IN_USE'
  /** `up` on a config that another live `up` runs from the same directory. */
  | 'US_ALREADY_RUNNING'
  | 'US_VOLUME_NOT_DATABASE'
  | 'US_STALE_EPOCH'
  | 'US_NOT_FOUND'
  | 'US_BAD_REQUEST'
  | 'US_FENCE_UNCONFIRMED'
  | 'US_NO_TARGET'
  | 'US_UNAUTHORIZED'
  /** A secret, token or certificate the config names cannot be read (the message says where it looked). */
  | 'US_CREDENTIALS_UNREADABLE'
  /** A plain-HTTP call to a part that speaks TLS only (`cluster.tls`). */
  | 'US_TLS_REQUIRED'
  | 'US_UNREACHABLE'
  | 'US_TIMEOUT'
  | 'US_REPLICATION'
  // A replica that fails verification (quick_check, file checksums) when it is to be promoted: not promoted.
  | 'US_REPLICA_CORRUPT'
  // A site that does not start names its cause (start-failure.ts); each message says what to do:
  /** `app.seed` names no directory, and the site has no volume yet to start from. */
  | 'US_SEED_MISSING'
  /** The app's program could not be started at all (not found, not executable). */
  | 'US_APP_SPAWN_FAILED'
  /** The app exited before it answered its probe: exit code and last lines of output. */
  | 'US_APP_EXITED'
  /** The app runs but gave no healthy probe answer within `app.startTimeout`: the probe and its last answers. */
  | 'US_APP_NOT_HEALTHY'
  /** The address and port the app must listen on are taken on its host. */
  | 'US_APP_PORT_IN_USE'
  | 'US_INTERNAL'
  /** bin/understudy.js found no compiled build (dist/): `npm run build`, or `npm ci`, which runs it. */
  | 'US_NOT_BUILT'
  /** The controller is stopping; a runbook that was waiting stays `running` and resumes at the next start. */
  | 'US_STOPPING'
  /** A rehearsal (`understudy drill`) that cannot run now (no free spare, a runbook running, …) or gave way to one. */
  | 'US_DRILL_REFUSED'
  // Answers the director gives a shop's client (503 + Retry-After), see director/front-errors.ts:
  | 'US_HOLD_TIMEOUT'
  | 'US_HOLD_FULL'
  | 'US_OUTCOME_UNKNOWN'
  | 'US_UPSTREAM_FAILED'
  | 'US_DIRECTOR_STOPPING'
  | 'US_SYNC_TIMEOUT';

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
