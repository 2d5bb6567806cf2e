import { classifyFailure, type FailureKind } from './hang-detector.ts';
import type { MalfunctionDecision } from './malfunction-detector.ts';
import type { FailureEvidence } from './site-monitor.ts';

/**
 * One detector's finding against a site's primary, in the form the controller
 * acts on and records (`failure-detected`). Every detector names its evidence:
 *
 * - `probe` / `process-gone` (SiteMonitor + classifyFailure): crash, hang,
 *   unresponsive, unreachable, or malfunction (wrong probe answers); `data` keeps
 *   SiteMonitor's evidence and adds `failure` and `classification`.
 * - `traffic` (MalfunctionDetector on the director's stats): malfunction; `data.evidence`
 *   holds the window, requests, errors and rate.
 * - `probe-content` (MalfunctionDetector on probe answers): malfunction; `data.evidence`
 *   holds the wrong answers.
 */
export interface Detection {
  source: 'probe' | 'process-gone' | 'traffic' | 'probe-content';
  failure: FailureKind;
  /** One sentence naming the evidence (`hang: the process is alive but 2 of 2 probes timed out …`). */
  reason: string;
  detectedAt: number;
  /** Last time the primary was known good (its last good probe). */
  lastHealthyAt: number;
  /** The `failure-detected` event's data: always has `failure`, `detectedAt`, `lastHealthyAt`. */
  data: Record<string, unknown>;
}

/** SiteMonitor's evidence (process gone, or `fall` failed probes), classified. */
export function probeDetection(e: FailureEvidence, processAlive: boolean | null): Detection {
  const classified = classifyFailure(e.probes, e.kind === 'process-gone' ? false : processAlive);
  return {
    source: e.kind,
    failure: classified.kind,
    reason: `${classified.kind}: ${classified.reason}`,
    detectedAt: e.detectedAt,
    lastHealthyAt: e.lastHealthyAt,
    data: { ...e, failure: classified.kind, classification: classified.evidence },
  };
}

/**
 * A raised malfunction (traffic window or wrong probe answers). `lastGoodProbeAt`: the
 * primary's last good probe. Its probes may well be good all along (a shop whose writes
 * fail answers /healthz), so the last known healthy moment is the earlier of that and
 * the start of the evidence: the failing window's start, or the first wrong answer.
 */
export function malfunctionDetection(d: Extract<MalfunctionDecision, { kind: 'malfunction' }>, lastGoodProbeAt: number): Detection {
  if (d.source === 'traffic') {
    const w = d.evidence;
    const lastHealthyAt = Math.min(lastGoodProbeAt, w.from);
    return {
      source: 'traffic',
      failure: 'malfunction',
      reason: `malfunction: ${d.reason}`,
      detectedAt: d.at,
      lastHealthyAt,
      data: {
        kind: 'traffic',
        failure: 'malfunction',
        detectedAt: d.at,
        lastHealthyAt,
        firstFailureAt: w.from,
        evidence: {
          upstream: w.upstream,
          windowMs: w.windowMs,
          from: w.from,
          to: w.to,
          requests: w.requests,
          errors: w.errors,
          errors5xx: w.errors5xx,
          connErrors: w.connErrors,
          rate: w.rate,
          errorRate: w.threshold,
          minRequests: w.minRequests,
          slices: w.slices.map((s) => ({ from: s.from, to: s.to, requests: s.requests, errors5xx: s.errors5xx, connErrors: s.connErrors, rate: s.rate })),
        },
      },
    };
  }
  const lastHealthyAt = Math.min(lastGoodProbeAt, d.evidence.probes[0]?.at ?? d.at);
  return {
    source: 'probe-content',
    failure: 'malfunction',
    reason: `malfunction: ${d.reason}`,
    detectedAt: d.at,
    lastHealthyAt,
    data: {
      kind: 'probe-content',
      failure: 'malfunction',
      detectedAt: d.at,
      lastHealthyAt,
      firstFailureAt: d.evidence.probes[0]?.at ?? d.at,
      evidence: d.evidence,
    },
  };
}
