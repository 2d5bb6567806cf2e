import type { SiteStats } from '../shared/contracts.ts';
import type { ProbeResult } from './http-probe.ts';
import { describeLoad, type LoadSignal } from './load-signal.ts';

/** Load answers below this share of a window's answers (or fewer than MIN_SHED) are not an episode. */
const RAISE_SHARE = 0.1;
const MIN_SHED = 10;
/** An episode ends once a whole window has at most this share of load answers and the probe no longer sheds. */
const CLEAR_SHARE = 0.02;

export interface LoadEpisode {
  /** `load-shedding` (one per episode) or `load-shedding-cleared`. */
  kind: 'load-shedding' | 'load-shedding-cleared';
  at: number;
  /** One sentence naming the evidence. */
  reason: string;
  evidence: {
    upstreams: string[];
    windowMs: number;
    /** Over the window: answers and load answers of the site's serving upstreams. */
    requests: number;
    shed: number;
    share: number | null;
    /** The probe's last answers that shed load (status, Retry-After). */
    probes: LoadSignal[];
  };
}

interface Point {
  at: number;
  requests: number;
  shed: number;
}

/**
 * Sees a site's app shed load: its answers say so (429, or 503 with
 * Retry-After; load-signal.ts), to the director's traffic or to the health probe.
 * That is a sign of load, never a failure: the controller answers it with an
 * event and, where the site may scale, a reader (scale-controller.ts) — never a
 * failover, never a fence.
 *
 * Raised once per episode: `probeFall` probes in a row shed load, or a window of
 * the site's traffic (its serving upstreams together) has at least 10 load
 * answers making at least 10 % of its answers. Cleared once a whole window has at
 * most 2 % and the probe's last `probeFall` answers did not shed.
 */
export class LoadWatch {
  private points: Point[] = [];
  /** The upstreams the points sum (a change starts the window again). */
  private members = '';
  /** The probe's load answers in a row (the newest `probeFall`), and its normal answers in a row. */
  private probeLoad: LoadSignal[] = [];
  private probeCalm = 0;
  private active = false;
  private stopped = false;

  constructor(
    readonly site: string,
    private readonly opts: { windowMs: number; probeFall: number; now?: () => number },
    /** The upstreams serving the site now (primary and readers), as the director names them. */
    private readonly upstreams: () => string[],
    private readonly onEpisode: (e: LoadEpisode) => void,
  ) {}

  get shedding(): boolean {
    return this.active;
  }

  observeStats(stats: readonly SiteStats[]): void {
    if (this.stopped) return;
    const names = new Set(this.upstreams());
    const s = stats.find((x) => x.site === this.site);
    if (!s) return;
    const members = [...names].sort().join(',');
    if (members !== this.members) {
      this.members = members;
      this.points = [];
    }
    let requests = 0;
    let shed = 0;
    for (const u of s.upstreams) {
      if (!names.has(u.upstream)) continue;
      requests += u.requests;
      shed += u.shed ?? 0;
    }
    const at = this.now();
    const last = this.points[this.points.length - 1];
    if (last && (requests < last.requests || shed < last.shed)) this.points = []; // the set of upstreams or the director changed
    this.points.push({ at, requests, shed });
    while (this.points.length > 1 && this.points[1]!.at <= at - this.opts.windowMs) this.points.shift();
    this.judge();
  }

  observeProbe(r: ProbeResult): void {
    if (this.stopped) return;
    if (r.load) {
      if (this.probeCalm > 0) this.probeLoad = [];
      this.probeCalm = 0;
      this.probeLoad.push(r.load);
      if (this.probeLoad.length > this.opts.probeFall) this.probeLoad.shift();
    } else if (r.ok) {
      this.probeCalm++;
      if (this.probeCalm >= this.opts.probeFall) this.probeLoad = [];
    }
    this.judge();
  }

  stop(): void {
    this.stopped = true;
  }

  private judge(): void {
    const w = this.window();
    const probeSheds = this.probeCalm === 0 && this.probeLoad.length >= this.opts.probeFall;
    if (!this.active) {
      const traffic = w !== null && w.shed >= MIN_SHED && w.share !== null && w.share >= RAISE_SHARE;
      if (!traffic && !probeSheds) return;
      this.active = true;
      const parts = [];
      if (traffic) parts.push(`${w.shed} of ${w.requests} answers in the last ${w.ms} ms said so (${Math.round(w.share! * 1000) / 10} %)`);
      if (probeSheds) parts.push(`its probe answered ${this.probeLoad.map(describeLoad).join(', ')}`);
      this.onEpisode({ kind: 'load-shedding', at: this.now(), reason: `the app sheds load: ${parts.join('; ')}`, evidence: this.evidence(w) });
      return;
    }
    const calmTraffic = w === null || w.ms < this.opts.windowMs * 0.9 ? false : w.share === null || w.share <= CLEAR_SHARE;
    if (calmTraffic && !probeSheds && this.probeLoad.length === 0) {
      this.active = false;
      this.onEpisode({
        kind: 'load-shedding-cleared',
        at: this.now(),
        reason: `the app no longer sheds load: ${w!.shed} of ${w!.requests} answers in the last ${w!.ms} ms, and its probe answers normally`,
        evidence: this.evidence(w),
      });
    }
  }

  private window(): { requests: number; shed: number; share: number | null; ms: number } | null {
    const a = this.points[0];
    const b = this.points[this.points.length - 1];
    if (!a || !b || b.at === a.at) return null;
    const requests = b.requests - a.requests;
    const shed = b.shed - a.shed;
    return { requests, shed, share: requests > 0 ? shed / requests : null, ms: b.at - a.at };
  }

  private evidence(w: ReturnType<LoadWatch['window']>): LoadEpisode['evidence'] {
    return {
      upstreams: this.upstreams(),
      windowMs: this.opts.windowMs,
      requests: w?.requests ?? 0,
      shed: w?.shed ?? 0,
      share: w?.share ?? null,
      probes: [...this.probeLoad],
    };
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
