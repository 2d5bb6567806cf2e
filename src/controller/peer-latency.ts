import { performance } from 'node:perf_hooks';
import { LatencyWindow } from '../director/latency-window.ts';

/** Probes of an idle host judged together: 3 s at 4 probes a second (fewer while it is stopped). */
const PEER_SPAN_SECONDS = 3;
const PEER_MIN_PROBES = 4;

/**
 * Latency of a site's powered hosts that carry none of its traffic (the warm
 * standby, idle spares of its pool), measured by asking their agents for status
 * every `everyMs`. The slowdown detector judges them beside the hosts that serve,
 * under the name `host:<name>`, so that "every host of the site is slow at once" can
 * be seen even before a reader exists: a primary slow together with its idle
 * standby is a shared cause (the machine, the network, the storage), and no reason
 * to add hosts or to move anything (`global-slowdown`). A probe that fails or times
 * out counts as its timeout. Judged over a span longer than the director's
 * `recentLatencyMs` (a few probes a second, not real traffic), with its own minimum.
 */
export class PeerLatency {
  private readonly windows = new Map<string, LatencyWindow>();
  private timer: NodeJS.Timeout | null = null;
  private readonly running = new Set<string>();
  /** The hosts of the last round: `hosts()` costs a look at every site, so it is read once a round, not per snapshot. */
  private current = new Set<string>();

  constructor(
    /** The hosts to sample right now (read once at every round). */
    private readonly hosts: () => string[],
    private readonly ask: (host: string, timeoutMs: number) => Promise<unknown>,
    private readonly everyMs = 250,
    private readonly timeoutMs = 2000,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.round(), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Upstream-like entries for the detector: `{ upstream: 'host:<name>', latencyMs }`. */
  snapshot(): { upstream: string; latencyMs: { p50: number; p95: number; p99: number; count: number }; minRequests: number }[] {
    for (const h of this.windows.keys()) if (!this.current.has(h)) this.windows.delete(h);
    return [...this.windows].map(([h, w]) => ({ upstream: `host:${h}`, latencyMs: w.percentiles(PEER_SPAN_SECONDS), minRequests: PEER_MIN_PROBES }));
  }

  private round(): void {
    this.current = new Set(this.hosts());
    for (const h of this.current) {
      if (this.running.has(h)) continue; // a probe still waiting: its lateness is recorded when it ends
      this.running.add(h);
      const t0 = performance.now();
      void this.ask(h, this.timeoutMs)
        .then(
          () => this.record(h, performance.now() - t0),
          () => this.record(h, Math.max(this.timeoutMs, performance.now() - t0)),
        )
        .finally(() => this.running.delete(h));
    }
  }

  private record(host: string, ms: number): void {
    let w = this.windows.get(host);
    if (!w) {
      w = new LatencyWindow();
      this.windows.set(host, w);
    }
    w.record(ms);
  }
}
