import { classifyProbeError, probeFailed, type ProbeFailureClass, type ProbeObservation } from './probe-evidence.ts';

/**
 * What kind of failure a run of failed probes is, given whether the host's process lives:
 *
 * - `crash`: the process is gone, or the port refuses connections (nothing listens).
 * - `hang`: the process is alive but the probes time out (SIGSTOP, deadlock, a stuck event loop).
 * - `unresponsive`: the probes time out and the process's liveness is unknown (not an
 *   embedded host): a hang or a host that vanished from the network; both are failures.
 * - `malfunction`: the app answers, wrongly (a status or body its probe does not accept).
 * - `unreachable`: the connection broke otherwise (reset, no route).
 */
export type FailureKind = 'crash' | 'hang' | 'unresponsive' | 'malfunction' | 'unreachable';

export interface ClassifiedProbe {
  at: number;
  error?: string;
  class: ProbeFailureClass;
}

export interface FailureClassification {
  kind: FailureKind;
  /** One sentence for the event message, naming the evidence. */
  reason: string;
  evidence: {
    /** `false`: gone; `true`: alive (possibly stopped); `null`: unknown. */
    processAlive: boolean | null;
    /** The failed probes of this episode, oldest first. */
    probes: ClassifiedProbe[];
    counts: Record<ProbeFailureClass, number>;
    firstFailureAt: number | null;
    lastFailureAt: number | null;
  };
}

/**
 * Classifies a run of failed probes (oldest first) plus process liveness. Pure.
 * A dead process decides alone. Otherwise the newest failed probe decides, since it
 * is the app's current state: a hang that an operator then kills ends `timeout,
 * refused` and is a crash. Usable on SiteMonitor's `FailureEvidence.probes` as is.
 */
export function classifyFailure(probes: readonly ProbeObservation[], processAlive: boolean | null): FailureClassification {
  const failed: ClassifiedProbe[] = probes.filter(probeFailed).map((p) => ({ at: p.at, error: p.error, class: classifyProbeError(p.error) }));
  const counts: Record<ProbeFailureClass, number> = { refused: 0, timeout: 0, 'bad-answer': 0, other: 0 };
  for (const p of failed) counts[p.class]++;
  const evidence = {
    processAlive,
    probes: failed,
    counts,
    firstFailureAt: failed[0]?.at ?? null,
    lastFailureAt: failed[failed.length - 1]?.at ?? null,
  };
  const n = failed.length;
  const last = failed[n - 1];
  const series = failed.map((p) => p.error ?? p.class).join(', ');
  if (processAlive === false) {
    return { kind: 'crash', reason: `the host's process is gone${n ? ` (probes: ${series})` : ''}`, evidence };
  }
  if (!last) {
    return { kind: 'unreachable', reason: 'failure signalled without a failed probe', evidence };
  }
  switch (last.class) {
    case 'refused':
      return { kind: 'crash', reason: `connections refused: nothing listens (${n} failed probes: ${series})`, evidence };
    case 'timeout':
      return processAlive
        ? { kind: 'hang', reason: `the process is alive but ${counts.timeout} of ${n} probes timed out (${series})`, evidence }
        : { kind: 'unresponsive', reason: `${counts.timeout} of ${n} probes timed out; process liveness unknown (${series})`, evidence };
    case 'bad-answer':
      return { kind: 'malfunction', reason: `the app answers wrongly (${series})`, evidence };
    case 'other':
      return { kind: 'unreachable', reason: `connections break (${series})`, evidence };
  }
}

export interface HangDetectorOptions {
  /** Failed probes in a row before a failure is raised (the site's `probe.fall`). */
  fall: number;
  /** Good probes in a row before a failed app counts as recovered (the site's `probe.rise`). */
  rise: number;
  /** Clock (ms) that stamps decisions. @default Date.now */
  now?: () => number;
}

/** A failure raised: the classification, stamped. */
export type FailureDecision = { kind: FailureKind; at: number } & Omit<FailureClassification, 'kind'>;
/** `rise` good probes after a failure. `failedSince`: when the failure was raised. */
export interface RecoveredDecision {
  kind: 'recovered';
  at: number;
  reason: string;
  evidence: { goodProbes: number; failedSince: number | null };
}
export type HangDecision = FailureDecision | RecoveredDecision;

export function isFailureDecision(d: HangDecision | null | undefined): d is FailureDecision {
  return d !== null && d !== undefined && d.kind !== 'recovered';
}

/**
 * Probe-series classifier with fall/rise hysteresis. Feed it every probe of one
 * host (and the process's liveness when known); it returns a decision only on a
 * change: a failure (classified, see `classifyFailure`) once `fall` probes in a row
 * failed, then nothing more until `rise` good probes in a row, which return
 * `recovered`. A single lost probe returns nothing. A dead process is a `crash` at
 * once (`observeProcess(false)`), without waiting for probes.
 */
export class HangDetector {
  private readonly now: () => number;
  private failures: ProbeObservation[] = [];
  private good = 0;
  private failedAt: number | null = null;

  constructor(private readonly opts: HangDetectorOptions) {
    if (!(opts.fall >= 1) || !(opts.rise >= 1)) throw new RangeError('HangDetector: fall and rise must be ≥ 1');
    this.now = opts.now ?? Date.now;
  }

  /** `failed` once a failure was raised, until `rise` good probes. */
  get state(): 'healthy' | 'suspect' | 'failed' {
    if (this.failedAt !== null) return 'failed';
    return this.failures.length > 0 ? 'suspect' : 'healthy';
  }

  /**
   * One probe result (HttpProbe's ProbeResult fits). `processAlive`: the host
   * process's liveness at that moment, `null` when unknown (not embedded).
   */
  observeProbe(p: ProbeObservation, processAlive: boolean | null): HangDecision | null {
    if (!probeFailed(p)) {
      this.good++;
      if (this.failedAt === null) {
        this.failures = [];
        return null;
      }
      if (this.good < this.opts.rise) return null;
      const d: HangDecision = {
        kind: 'recovered',
        at: this.now(),
        reason: `${this.good} good probes in a row`,
        evidence: { goodProbes: this.good, failedSince: this.failedAt },
      };
      this.failedAt = null;
      this.failures = [];
      return d;
    }
    this.good = 0;
    if (this.failedAt !== null) return null;
    this.failures.push({ at: p.at, error: p.error, ok: false });
    if (processAlive === false) return this.raise(false);
    if (this.failures.length < this.opts.fall) return null;
    return this.raise(processAlive);
  }

  /** A liveness check between probes: a gone process is a crash at once; an alive one changes nothing. */
  observeProcess(alive: boolean): HangDecision | null {
    if (alive || this.failedAt !== null) return null;
    this.good = 0;
    return this.raise(false);
  }

  reset(): void {
    this.failures = [];
    this.good = 0;
    this.failedAt = null;
  }

  private raise(processAlive: boolean | null): HangDecision {
    const at = this.now();
    this.failedAt = at;
    return { at, ...classifyFailure(this.failures, processAlive) };
  }
}
