import type { ProbeConfig } from '../config/types.ts';
import { processWatch, type ProcessWatch } from './process-watch.ts';
import { loopStalls, type StallClock } from './loop-stall.ts';
import type { ProbeResult } from './http-probe.ts';
import { createProbe, type AppProbe } from './app-probe.ts';
import { background } from '../shared/background.ts';

export interface FailureEvidence {
  /** `process-gone`: the host's process group leader died; `probe`: `fall` probes in a row failed. */
  kind: 'process-gone' | 'probe';
  detectedAt: number;
  /** Last time the primary answered its probe (or was known alive). */
  lastHealthyAt: number;
  /** The first failed observation of this episode. */
  firstFailureAt: number;
  probes: { at: number; error?: string }[];
  connErrorsSignalled: number;
}

export interface MonitorTarget {
  site: string;
  host: string;
  /** What the probe calls: `probeTarget()` (an HTTP URL, or tcp://address:port). */
  url: string;
  /** Process-group leader of an embedded host, when known. */
  pid: number | null;
}

/** After a failed probe the next comes sooner, so that `fall` is reached quickly. */
const RECHECK_MS = 40;
/**
 * A timed-out probe during which the controller's own event loop was held up for at
 * least this share of the timeout proves nothing about the app (loop-stall.ts): it is
 * not counted, and the app is probed again at once. Only this many in a row are let
 * go: a controller held up at every probe must still see a hung app.
 */
const STALL_SHARE = 0.25;
const MAX_INCONCLUSIVE_IN_A_ROW = 3;

/**
 * Watches one site's current primary and calls `onFailure` once when it fails,
 * naming the evidence. Signals combined: the embedded host's process (a death is
 * definitive), HTTP probes with fall/rise, and the director's refused connections
 * (which trigger an immediate probe, never a failover by themselves).
 */
export class SiteMonitor {
  private readonly probe: AppProbe;
  private probeTimer: NodeJS.Timeout | null = null;
  private unwatchProcess: (() => void) | null = null;
  private stopped = false;
  private fired = false;
  private consecutiveFailures = 0;
  private consecutiveSuccesses = 0;
  private recentFailures: { at: number; error?: string }[] = [];
  private connErrors = 0;
  private probing = false;
  /**
   * A signal arrived while a probe was in flight: that probe may have been answered
   * before the failure the signal reports, so another follows it at once. (The director
   * sends no more signals while it holds the site's requests: a signal dropped here
   * would leave detection to the next regular probe, up to `everyMs` later.)
   */
  private probeAgain = false;
  lastHealthyAt = Date.now();
  healthy = false;
  lastProbe: ProbeResult | null = null;
  /** Probes run and failed since the monitor started (a lost probe that raised nothing still counts). */
  readonly counts = { probes: 0, failed: 0, lastFailedAt: null as number | null, inconclusive: 0 };
  private inconclusiveInARow = 0;

  /**
   * @param onProbe every probe result, good or bad, before the monitor judges it
   *   (the malfunction detector reads the answers; the governor counts good probes
   *   towards a host's trust). Must not throw.
   */
  constructor(
    readonly target: MonitorTarget,
    private readonly cfg: ProbeConfig,
    private readonly onFailure: (e: FailureEvidence) => void,
    private readonly onProbe?: (r: ProbeResult) => void,
    private readonly processes: ProcessWatch = processWatch,
    private readonly stalls: StallClock = loopStalls,
  ) {
    this.probe = createProbe(target.url, cfg);
    stalls.start();
  }

  start(): void {
    this.scheduleProbe(0);
    if (this.target.pid !== null) {
      this.unwatchProcess = this.processes.watch(this.target.pid, () => this.fail('process-gone', Date.now()));
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.unwatchProcess?.();
    this.unwatchProcess = null;
    background(this.probe.close());
  }

  /** The director could not connect to this primary: probe now. */
  connErrorSignalled(): void {
    this.connErrors++;
    if (this.probing) this.probeAgain = true;
    else this.scheduleProbe(0);
  }

  private scheduleProbe(delayMs: number): void {
    if (this.stopped || this.fired) return;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => background(this.runProbe()), delayMs);
  }

  private async runProbe(): Promise<void> {
    if (this.stopped || this.fired) return;
    if (this.probing) {
      this.probeAgain = true;
      return;
    }
    this.probing = true;
    this.probeAgain = false;
    const r = await this.probe.run();
    this.probing = false;
    const again = this.probeAgain;
    this.probeAgain = false;
    if (this.stopped || this.fired) return;
    if (!r.ok && r.error === 'timeout' && this.inconclusiveInARow < MAX_INCONCLUSIVE_IN_A_ROW) {
      const stalled = this.stalls.stalledDuring(r.at, r.at + r.latencyMs);
      if (stalled >= this.cfg.timeoutMs * STALL_SHARE) {
        // The controller, not the app, was slow: this probe says nothing. Asked again at once.
        this.inconclusiveInARow++;
        this.counts.inconclusive++;
        this.scheduleProbe(0);
        return;
      }
    }
    this.inconclusiveInARow = 0;
    this.lastProbe = r;
    this.counts.probes++;
    if (!r.ok) {
      this.counts.failed++;
      this.counts.lastFailedAt = r.at;
    }
    this.onProbe?.(r);
    if (this.stopped || this.fired) return;
    if (r.ok) {
      this.consecutiveFailures = 0;
      this.consecutiveSuccesses++;
      this.recentFailures = [];
      if (this.consecutiveSuccesses >= this.cfg.rise || this.healthy) this.healthy = true;
      this.lastHealthyAt = r.at + r.latencyMs;
      this.scheduleProbe(again ? 0 : this.cfg.everyMs);
      return;
    }
    this.consecutiveSuccesses = 0;
    this.consecutiveFailures++;
    this.recentFailures.push({ at: r.at, error: r.error });
    if (this.consecutiveFailures >= this.cfg.fall) {
      this.healthy = false;
      this.fail('probe', Date.now());
      return;
    }
    this.scheduleProbe(Math.min(this.cfg.everyMs, RECHECK_MS));
  }

  private fail(kind: FailureEvidence['kind'], detectedAt: number): void {
    if (this.fired || this.stopped) return;
    this.fired = true;
    this.healthy = false;
    this.stop();
    this.onFailure({
      kind,
      detectedAt,
      lastHealthyAt: this.lastHealthyAt,
      firstFailureAt: this.recentFailures[0]?.at ?? detectedAt,
      probes: this.recentFailures,
      connErrorsSignalled: this.connErrors,
    });
  }
}
