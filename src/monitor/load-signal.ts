/**
 * An answer in which the app says it sheds load: `429 Too Many Requests`, or
 * `503 Service Unavailable` with a `Retry-After` header (RFC 9110 §15.6.4: the
 * server is temporarily overloaded and says when to come back). Such an answer is
 * a sign of load, never of a broken host: moving the app to another host cures
 * nothing, and fencing the host takes capacity away. So, wherever an answer is
 * judged — the health probe, the malfunction detector, the director's counters —
 * a load answer is never a failed probe and never an error of the host; it is a
 * reason to add a reader where the site may scale (scale-controller.ts).
 *
 * A 503 without `Retry-After` stays an error: an app that is down for good says
 * so the same way, and nothing tells the two apart.
 */
export interface LoadSignal {
  status: 429 | 503;
  /** The `Retry-After` header as the app sent it (seconds or an HTTP date), or null. */
  retryAfter: string | null;
}

/**
 * The load signal in an answer, or null. `retryAfter`: the answer's `Retry-After`
 * header value as undici or node:http give it (string, string[] or undefined).
 */
export function loadSignal(status: number, retryAfter: unknown): LoadSignal | null {
  const ra = typeof retryAfter === 'string' ? retryAfter : Array.isArray(retryAfter) && typeof retryAfter[0] === 'string' ? retryAfter[0] : null;
  if (status === 429) return { status: 429, retryAfter: ra };
  if (status === 503 && ra !== null && ra.trim() !== '') return { status: 503, retryAfter: ra };
  return null;
}

/** The cheap form for the director's hot path: whether `status` (with a Retry-After header present or not) sheds load. */
export function isLoadAnswer(status: number, hasRetryAfter: boolean): boolean {
  return status === 429 || (status === 503 && hasRetryAfter);
}

/** `429` or `503 with Retry-After: 5`: how events name a load answer. */
export function describeLoad(s: LoadSignal): string {
  return s.status === 429 ? `429${s.retryAfter ? ` (Retry-After: ${s.retryAfter})` : ''}` : `503 with Retry-After: ${s.retryAfter}`;
}
