import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../shared/errors.ts';

/**
 * Answers the director itself gives a shop's client instead of an upstream's.
 * Every one is a 503 with `Retry-After: 1` (the condition is transient: a
 * failover takes about a second) and a JSON body `{ error: { code, message } }`
 * whose code a client or a test can act on:
 *
 * - US_HOLD_TIMEOUT: the request waited holdTimeoutMs for a routable primary. It
 *   never reached the app: safe to send again, whatever the method.
 * - US_HOLD_FULL: holdMaxRequests were already waiting. Never reached the app.
 * - US_OUTCOME_UNKNOWN: a modifying request was sent and the connection broke
 *   before the answer, or (sync mode) the app answered but the storage processor
 *   holding the write could not be asked whether the replica has it. The app may or may not have applied it; the client must
 *   check (e.g. look the order up) before sending it again.
 * - US_UPSTREAM_FAILED: a read failed on two upstreams (it was retried once).
 * - US_DIRECTOR_STOPPING: the director shut down while the request was held.
 * - US_SYNC_TIMEOUT: sync mode, strict: the app applied the write but the replica
 *   did not confirm it within the site's sync timeout (or its storage processor could
 *   not be asked). The write may be lost if the primary fails now; the client must
 *   check before sending it again.
 *
 * The codes are in the shared registry (src/shared/errors.ts); they are front-side
 * answers to shop clients, not UnderstudyErrors raised to an operator.
 */
export type FrontErrorCode = Extract<
  ErrorCode,
  'US_HOLD_TIMEOUT' | 'US_HOLD_FULL' | 'US_OUTCOME_UNKNOWN' | 'US_UPSTREAM_FAILED' | 'US_DIRECTOR_STOPPING' | 'US_BAD_REQUEST' | 'US_SYNC_TIMEOUT'
>;

export function sendFrontError(res: ServerResponse, status: number, code: FrontErrorCode, message: string): void {
  if (res.headersSent || res.destroyed) {
    // Part of an answer is already out: cutting the connection is the only honest signal left.
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'retry-after': '1',
    'cache-control': 'no-store',
  });
  res.end(body);
}
