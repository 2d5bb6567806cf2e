/**
 * Patroni's rule for a leader lease (ttl, loop_wait, retry_timeout): loop + 2 × retry ≤
 * ttl, so that a leader gets one full renewal attempt, through every etcd member, before
 * its lease can run out. etcd leases are whole seconds.
 */
export function checkLeaseTimings(t: { ttlMs: number; loopMs: number; retryMs: number }): string | null {
  if (t.ttlMs % 1000 !== 0 || t.ttlMs < 2000) return `ttl must be whole seconds, at least 2 s (etcd leases are in seconds): ${t.ttlMs} ms`;
  if (t.loopMs + 2 * t.retryMs > t.ttlMs)
    return `loop (${t.loopMs} ms) + 2 × retry (${t.retryMs} ms) must not exceed ttl (${t.ttlMs} ms): a leader would lose its key before it could renew it`;
  return null;
}
