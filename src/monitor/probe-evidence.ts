/**
 * What one failed probe says about the app, from the `error` string HttpProbe
 * gives it. The classes are what the detectors reason about:
 *
 * - `refused`: nothing listens on the port: the app (or its host) is gone.
 * - `timeout`: something accepted the connection, or nothing answered the SYN, but
 *   no answer came within the timeout: a stopped (SIGSTOP), deadlocked or saturated app.
 *   A stopped process still has its listening socket, so the kernel completes the
 *   handshake and the probe times out waiting for headers; it is never `refused`.
 * - `bad-answer`: the app answered, wrongly: a status or a body the site's probe does not accept.
 * - `other`: reset, unreachable network, DNS…: the connection broke in another way.
 */
export type ProbeFailureClass = 'refused' | 'timeout' | 'bad-answer' | 'other';

/** A probe as the detectors see it: ProbeResult and SiteMonitor's FailureEvidence.probes both fit. */
export interface ProbeObservation {
  at: number;
  /** Absent (or `ok: true`) for a probe that succeeded. */
  error?: string;
  ok?: boolean;
}

export function probeFailed(p: ProbeObservation): boolean {
  return p.ok === undefined ? p.error !== undefined : !p.ok;
}

/** The class of a failed probe's `error` (HttpProbe's wording: `refused`, `timeout`, `status 500`, `body …`). */
export function classifyProbeError(error: string | undefined): ProbeFailureClass {
  if (error === undefined) return 'other';
  if (error === 'refused' || error === 'ECONNREFUSED') return 'refused';
  if (error === 'timeout' || /TIMEOUT|TimeoutError|AbortError/i.test(error)) return 'timeout';
  if (/^status \d+$/.test(error) || error.startsWith('body')) return 'bad-answer';
  return 'other';
}
