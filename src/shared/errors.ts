/**
 * One registry of error codes. Every error Understudy raises to an operator has a
 * stable `code` (for scripts and tests) and a message that says what to do.
 */
export type ErrorCode =
  | 'US_CONFIG_INVALID'
  | 'US_CONFIG_NOT_FOUND'
  | 'US_PORT_IN_USE'
  | 'US_VOLUME_NOT_DATABASE'
  | 'US_STALE_EPOCH'
  | 'US_NOT_FOUND'
  | 'US_BAD_REQUEST'
  | 'US_FENCE_UNCONFIRMED'
  | 'US_NO_TARGET'
  | 'US_UNAUTHORIZED'
  | 'US_UNREACHABLE'
  | 'US_TIMEOUT'
  | 'US_REPLICATION'
  // A replica that fails verification (quick_check, file checksums) when it is to be promoted: not promoted (issue 6).
  | 'US_REPLICA_CORRUPT'
  | 'US_INTERNAL'
  /** bin/understudy.js found no compiled build (dist/): `npm run build`, or `npm ci`, which runs it. */
  | 'US_NOT_BUILT'
  /** The controller is stopping; a runbook that was waiting stays `running` and resumes at the next start. */
  | 'US_STOPPING'
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
