import type { ActionGovernor, DeferCode, HostTrust } from './action-governor.ts';
import type { Detection } from '../monitor/detection.ts';
import type { EventRecord } from '../state/state-store.ts';
import { describeSkipped, type TargetCandidates } from './trusted-candidates.ts';
import { background } from '../shared/background.ts';

/** While the failover waits for a target to earn trust by probes (no time to wait for), it asks again this often. */
const TRUST_RETRY_MS = 500;

export interface AutoFailoverDeps {
  governor: ActionGovernor;
  /** Tells the governor (and whoever reports trust) that `host` failed; returns its trust after. */
  hostFailed: (host: string) => HostTrust;
  addEvent: (e: Omit<EventRecord, 'id' | 'at'>) => void;
  /** The site still serves on `host` and no runbook runs: a failover of it still makes sense. */
  stillPrimary: (site: string, host: string) => boolean;
  /** The standbys the failover could use, and those left out for trust. */
  candidates: (site: string, failed: string) => TargetCandidates;
  /**
   * Asked when a deferred failover is due: a reason when the primary has recovered
   * from what `detection` found (the detector that raised it sees it well again), else null.
   */
  recovered: (site: string, host: string, detection: Detection) => string | null;
  /**
   * Starts the failover runbook; resolves when it ends. `avoid`: hosts it takes only
   * when no other is usable (the last failover's source, for an independent crash
   * let through the cooldown).
   */
  start: (site: string, host: string, detection: Detection, opts: { avoid: string[] }) => Promise<void>;
}

interface Pending {
  host: string;
  detection: Detection;
  timer: NodeJS.Timeout;
  code: DeferCode | 'no-trusted-target';
  since: number;
}

/**
 * Turns a detector's finding against a primary into a failover, or into a
 * recorded reason not to start one yet (DESIGN "No flapping": a reason, a rate
 * limit and hysteresis for every automatic action):
 *
 * 1. `failure-detected` names the detector's evidence; the governor learns the host
 *    failed (a failure soon after it regained trust is a flap: it is held out).
 * 2. With no trusted standby left (every candidate failed recently or flaps), the
 *    failover is deferred: fencing a primary that may still half-serve, with nowhere
 *    to go, would only make things worse.
 * 3. Within the failover cooldown (`controller.failover.cooldown`), it is deferred,
 *    unless it is an independent crash (ActionGovernor `independent`: hard evidence,
 *    not where the last failover came from, a trusted target other than that host):
 *    then it starts at once, with a `cooldown-waived` event that says why.
 *
 * A deferral is one `failover-deferred` event saying why and when it is retried (a
 * new event only when the reason changes); at the retry, a primary that has
 * recovered cancels it (`failover-cancelled`), else it is decided again. Findings
 * against a site whose failover is already deferred only refresh its evidence.
 */
export class AutoFailover {
  private readonly pending = new Map<string, Pending>();
  private stopped = false;

  constructor(private readonly deps: AutoFailoverDeps) {}

  /** A detector raised `detection` against `host`, the primary of `site`. */
  onDetection(site: string, host: string, detection: Detection): void {
    if (this.stopped) return;
    const p = this.pending.get(site);
    if (p && p.host === host) {
      p.detection = { ...detection, detectedAt: p.detection.detectedAt, lastHealthyAt: p.detection.lastHealthyAt };
      return;
    }
    if (!this.deps.stillPrimary(site, host)) return;
    const trust = this.deps.hostFailed(host);
    this.deps.addEvent({
      site,
      host,
      kind: 'failure-detected',
      message: `${site}: primary ${host} failed (${detection.reason})`,
      data: { ...detection.data, source: detection.source, hostTrust: trust },
    });
    if (trust.state === 'held-out') {
      this.deps.addEvent({ site, host, kind: 'host-held-out', message: `${host} is held out of automatic use: ${trust.why}`, data: { trust } });
    }
    this.attempt(site, host, detection);
  }

  /** Pending deferrals (for status and tests). */
  deferred(site: string): { host: string; code: string; since: number } | null {
    const p = this.pending.get(site);
    return p ? { host: p.host, code: p.code, since: p.since } : null;
  }

  stop(): void {
    this.stopped = true;
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }

  private attempt(site: string, host: string, detection: Detection): void {
    if (this.stopped) return;
    if (!this.deps.stillPrimary(site, host)) {
      this.clear(site);
      return;
    }
    const { candidates, skipped } = this.deps.candidates(site, host);
    if (candidates.length === 0 && skipped.length > 0) {
      const times = skipped.map((s) => s.retryAt).filter((t): t is number => t !== null);
      const retryAt = skipped.some((s) => s.retryAt === null) ? null : Math.min(...times);
      this.defer(site, host, detection, 'no-trusted-target', `no trusted standby is left: ${describeSkipped(skipped)}`, retryAt);
      return;
    }
    const d = this.deps.governor.decide(site, 'failover', detection.reason, {
      failover: { from: host, hardEvidence: detection.failure === 'crash', targets: candidates },
    });
    if (!d.allowed) {
      this.defer(site, host, detection, d.code, d.why, d.retryAt);
      return;
    }
    this.clear(site);
    const avoid = d.avoid ?? [];
    if (avoid.length > 0) {
      this.deps.addEvent({
        site,
        host,
        kind: 'cooldown-waived',
        message: `${site}: automatic failover from ${host} starts at once: ${d.why}`,
        data: { why: d.why, avoid, targets: candidates, failure: detection.failure },
      });
    }
    background(this.deps.start(site, host, detection, { avoid }).finally(() => this.deps.governor.completed(site, 'failover')));
  }

  private defer(site: string, host: string, detection: Detection, code: Pending['code'], why: string, retryAt: number | null): void {
    const now = Date.now();
    const old = this.pending.get(site);
    if (old) clearTimeout(old.timer);
    const delay = retryAt === null ? TRUST_RETRY_MS : Math.max(20, retryAt - now);
    if (!old || old.code !== code) {
      const when =
        retryAt === null
          ? `retrying every ${TRUST_RETRY_MS} ms until a standby has its good probes`
          : `retrying at ${new Date(retryAt).toISOString()} (in ${retryAt - now} ms)`;
      this.deps.addEvent({
        site,
        host,
        kind: 'failover-deferred',
        message: `${site}: automatic failover from ${host} deferred: ${why}; ${when}`,
        data: { code, why, retryAt, retryInMs: retryAt === null ? null : retryAt - now, failure: detection.failure, reason: detection.reason },
      });
    }
    const timer = setTimeout(() => this.retry(site), delay);
    this.pending.set(site, { host, detection, timer, code, since: old?.since ?? now });
  }

  private retry(site: string): void {
    const p = this.pending.get(site);
    if (!p || this.stopped) return;
    const why = this.deps.recovered(site, p.host, p.detection);
    if (why !== null) {
      this.clear(site);
      this.deps.addEvent({
        site,
        host: p.host,
        kind: 'failover-cancelled',
        message: `${site}: deferred failover from ${p.host} cancelled: ${why}`,
        data: { failure: p.detection.failure, deferredForMs: Date.now() - p.since },
      });
      return;
    }
    this.attempt(site, p.host, p.detection);
  }

  private clear(site: string): void {
    const p = this.pending.get(site);
    if (p) clearTimeout(p.timer);
    this.pending.delete(site);
  }
}
