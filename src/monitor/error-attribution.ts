import type { RequestKindStats } from '../shared/contracts.ts';
import type { TrafficWindow } from './malfunction-detector.ts';

/**
 * Whether the errors of a primary's traffic belong to the host or follow the
 * request. A failover cures only the first: a client that sends a request the app
 * cannot handle, or an app that fails one kind of request, fails the same way on
 * every host, and each failover would only fence a healthy host.
 *
 * Evidence, from the director's answers by kind of request (method and route,
 * RequestKindStats) and from the controller's own checks:
 *
 * - The probe fails as well, or most failed requests could not even connect: the
 *   host (or its process) is at fault.
 * - Every kind of request fails (no kind is answered well): the host.
 * - Some kinds are answered well while others fail: the errors are concentrated.
 *   A failing kind is then the host's when it was answered well on this same host
 *   just before its errors began and has not been answered well since (a
 *   regression on this host: a disk that turned read-only, a full volume), or when
 *   its failing requests, sent again by the controller, succeed elsewhere (a
 *   reader). It follows the request when it is still answered well part of the
 *   time on this host (what fails depends on the request), when a failed request
 *   sent again succeeds on this host (it depended on the client's headers or body),
 *   or when it fails the same way elsewhere. A kind with none of this evidence
 *   (it never worked) follows the request too: the host serves the other kinds.
 * - Any failing kind that is the host's makes the errors the host's.
 */

/** Failed requests that are not the host's to this share of the failures at most… */
const CONN_ERROR_SHARE = 0.5;
/** A kind is "answered well" with at least this many good answers in the recent half of the window. */
const MIN_CLEAN_OK = 3;
/** A regression needs at least this many good answers of the kind before its errors began. */
const MIN_OK_BEFORE = 5;
/** Still answered well now: at least this many good answers, and this share of the kind's answers, in the recent half. */
const MIXED_MIN_OK = 2;
const MIXED_MIN_SHARE = 0.05;

/** One kind of request over a span: answers, 5xx (not load), load answers, good answers. */
export interface KindDelta {
  kind: string;
  method: string;
  requests: number;
  errors: number;
  shed: number;
  ok: number;
}

interface KindPoint {
  at: number;
  kinds: Map<string, RequestKindStats>;
}

/**
 * Successive per-kind snapshots of one upstream, kept `keepMs` (enough to see
 * what a kind did before its errors began). Counters that go down (the director
 * restarted) start the history again.
 */
export class KindHistory {
  private points: KindPoint[] = [];
  /** Whether the director gives per-kind figures at all. */
  available = false;

  constructor(private readonly keepMs: number) {}

  push(at: number, kinds: readonly RequestKindStats[] | undefined): void {
    if (kinds === undefined) return;
    this.available = true;
    const map = new Map(kinds.map((k) => [k.kind, k]));
    const last = this.points[this.points.length - 1];
    if (last && (at < last.at || [...map.values()].some((k) => k.requests < (last.kinds.get(k.kind)?.requests ?? 0)))) this.points = [];
    this.points.push({ at, kinds: map });
    const horizon = at - this.keepMs;
    let drop = 0;
    while (drop + 1 < this.points.length && this.points[drop + 1]!.at <= horizon) drop++;
    if (drop > 0) this.points.splice(0, drop);
  }

  clear(): void {
    this.points = [];
  }

  /** When the oldest kept point was taken, or null when there is none. */
  get startAt(): number | null {
    return this.points[0]?.at ?? null;
  }

  get latest(): KindPoint | undefined {
    return this.points[this.points.length - 1];
  }

  /** Per-kind traffic between the newest points at or before `from` and `to` (empty when there is no such pair). */
  between(from: number, to: number): Map<string, KindDelta> {
    const a = this.atOrBefore(from) ?? this.points[0];
    const b = this.atOrBefore(to);
    const out = new Map<string, KindDelta>();
    if (!a || !b || b.at <= a.at) return out;
    for (const k of b.kinds.values()) out.set(k.kind, diff(a.kinds.get(k.kind), k));
    return out;
  }

  /**
   * For one kind: when its errors began within the history (the start of the first
   * interval in which it failed) and how many good answers it had before that.
   * `onsetAt` null: it never failed in the history.
   */
  onset(kind: string): { onsetAt: number | null; okBefore: number } {
    const first = this.points[0];
    if (!first) return { onsetAt: null, okBefore: 0 };
    for (let i = 1; i < this.points.length; i++) {
      const prev = this.points[i - 1]!;
      const cur = this.points[i]!;
      const d = diff(prev.kinds.get(kind), cur.kinds.get(kind) ?? prev.kinds.get(kind));
      if (d.errors > 0) return { onsetAt: prev.at, okBefore: diff(first.kinds.get(kind), prev.kinds.get(kind)).ok };
    }
    return { onsetAt: null, okBefore: 0 };
  }

  /** The newest failing requests of a kind, as the director kept them (idempotent kinds only). */
  samples(kind: string): string[] {
    return this.latest?.kinds.get(kind)?.samples ?? [];
  }

  private atOrBefore(t: number): KindPoint | undefined {
    for (let i = this.points.length - 1; i >= 0; i--) if (this.points[i]!.at <= t) return this.points[i];
    return undefined;
  }
}

function diff(a: RequestKindStats | undefined, b: RequestKindStats | undefined): KindDelta {
  const requests = (b?.requests ?? 0) - (a?.requests ?? 0);
  const errors = (b?.errors ?? 0) - (a?.errors ?? 0);
  const shed = (b?.shed ?? 0) - (a?.shed ?? 0);
  return { kind: b?.kind ?? a?.kind ?? '', method: b?.method ?? a?.method ?? '', requests, errors, shed, ok: requests - errors - shed };
}

/** One failed request sent again by the controller: on the primary, and on each other host that serves the site. */
export interface Replay {
  kind: string;
  /** Path and query. */
  request: string;
  primary: ReplayAnswer;
  elsewhere: (ReplayAnswer & { host: string })[];
}
/** `load`: the answer said the app sheds load (load-signal.ts): neither a failure nor a success. */
export interface ReplayAnswer {
  status?: number;
  error?: string;
  load?: boolean;
}

export type KindVerdict = 'host' | 'request' | 'undecided';

export interface KindFinding extends KindDelta {
  /** The recent half of the window. */
  recent: { requests: number; errors: number; ok: number };
  onsetAt: number | null;
  okBefore: number;
  verdict: KindVerdict;
  why: string;
}

export interface ErrorAttribution {
  owner: 'host' | 'request';
  /** One sentence that names the evidence. */
  reason: string;
  /** The rule that decided: `probe`, `connections`, `no-kinds`, `every-kind`, `kind`. */
  rule: 'probe' | 'connections' | 'no-kinds' | 'every-kind' | 'kind';
  failing: KindFinding[];
  /** Kinds answered well in the recent half of the window. */
  clean: { kind: string; ok: number }[];
  replays: Replay[];
}

export interface AttributionInput {
  host: string;
  window: TrafficWindow;
  history: KindHistory;
  /** Why the probe fails as well (its last answer was wrong), or null when it succeeds. */
  probeFailing: string | null;
  replays?: Replay[];
}

/** The kinds of the window that fail (5xx at the threshold rate, at least 3), most errors first. */
export function failingKinds(window: TrafficWindow, history: KindHistory): KindDelta[] {
  return [...history.between(window.from, window.to).values()]
    .filter((k) => k.errors >= 3 && k.errors >= window.threshold * (k.requests - k.shed))
    .sort((a, b) => b.errors - a.errors);
}

export function attributeErrors(input: AttributionInput): ErrorAttribution {
  const { window: w, history, host } = input;
  const replays = input.replays ?? [];
  const base = { failing: [] as KindFinding[], clean: [] as { kind: string; ok: number }[], replays };
  if (input.probeFailing !== null) {
    return { ...base, owner: 'host', rule: 'probe', reason: `the probe of ${host} fails as well (${input.probeFailing})` };
  }
  if (w.connErrors > 0 && w.connErrors >= CONN_ERROR_SHARE * w.errors) {
    return {
      ...base,
      owner: 'host',
      rule: 'connections',
      reason: `${w.connErrors} of the ${w.errors} failed requests could not connect to ${host} or lost their connection: that is the host's, not the request's`,
    };
  }
  if (!history.available) {
    return {
      ...base,
      owner: 'host',
      rule: 'no-kinds',
      reason: "the director gives no figures by kind of request, so errors cannot be told from the request's",
    };
  }
  const half = w.from + (w.to - w.from) / 2;
  const recent = history.between(half, w.to);
  const failing = failingKinds(w, history);
  const failingNames = new Set(failing.map((k) => k.kind));
  const clean = [...recent.values()]
    .filter((k) => !failingNames.has(k.kind) && k.ok >= MIN_CLEAN_OK && k.errors <= (w.threshold / 2) * (k.requests - k.shed))
    .map((k) => ({ kind: k.kind, ok: k.ok }))
    .sort((a, b) => b.ok - a.ok);
  const findings = failing.map((k) =>
    judgeKind(
      k,
      recent.get(k.kind),
      history,
      replays.filter((r) => r.kind === k.kind),
      host,
    ),
  );
  if (failing.length === 0 || clean.length === 0) {
    return {
      ...base,
      failing: findings,
      clean,
      owner: 'host',
      rule: 'every-kind',
      reason:
        failing.length === 0
          ? `the errors are spread over every kind of request on ${host}, none fails by itself`
          : `no kind of request is answered well on ${host} (${failing.map((k) => `${k.kind} ${k.errors} of ${k.requests - k.shed} failed`).join(', ')})`,
    };
  }
  const hostKinds = findings.filter((f) => f.verdict === 'host');
  const cleanText = `${clean
    .slice(0, 3)
    .map((c) => `${c.kind} (${c.ok} answered well)`)
    .join(', ')}${clean.length > 3 ? ` and ${clean.length - 3} more` : ''}`;
  if (hostKinds.length > 0) {
    return { ...base, failing: findings, clean, owner: 'host', rule: 'kind', reason: hostKinds.map((f) => `${f.kind}: ${f.why}`).join('; ') };
  }
  return {
    ...base,
    failing: findings,
    clean,
    owner: 'request',
    rule: 'kind',
    reason: `${findings.map((f) => `${f.kind} fails (${f.errors} of ${f.requests - f.shed}): ${f.why}`).join('; ')}; meanwhile ${host} answers ${cleanText} and its probe`,
  };
}

function judgeKind(k: KindDelta, recentDelta: KindDelta | undefined, history: KindHistory, replays: Replay[], host: string): KindFinding {
  const r = recentDelta ?? { requests: 0, errors: 0, ok: 0 };
  const recent = { requests: r.requests, errors: r.errors, ok: r.ok };
  const { onsetAt, okBefore } = history.onset(k.kind);
  const out = (verdict: KindVerdict, why: string): KindFinding => ({ ...k, recent, onsetAt, okBefore, verdict, why });
  for (const rp of replays) {
    const failedHere = failed(rp.primary);
    if (rp.primary.load === true) continue;
    if (rp.primary.status !== undefined && !failedHere)
      return out(
        'request',
        `${rp.request} sent again to ${host} without the client's headers and body answered ${rp.primary.status}: what fails depends on the request`,
      );
    if (!failedHere) continue;
    const ok = rp.elsewhere.find((e) => e.status !== undefined && !failed(e) && e.load !== true && e.status !== 421);
    if (ok) return out('host', `${rp.request} fails again on ${host} (${answerText(rp.primary)}) but succeeds on ${ok.host} (${ok.status})`);
    const same = rp.elsewhere.find((e) => failed(e) && e.status !== undefined);
    if (same) return out('request', `${rp.request} fails on ${same.host} too (${answerText(same)})`);
  }
  if (recent.ok >= MIXED_MIN_OK && recent.ok >= MIXED_MIN_SHARE * (recent.requests || 1) && recent.errors > 0) {
    return out('request', `${recent.ok} of its ${recent.requests} latest requests succeed on ${host}: what fails depends on the request`);
  }
  if (onsetAt !== null && okBefore >= MIN_OK_BEFORE) {
    return out(
      'host',
      `${host} answered it well ${okBefore} times before its errors began (${new Date(onsetAt).toISOString()}) and ${recent.ok === 0 ? 'not once' : `only ${recent.ok} times`} since`,
    );
  }
  return out('undecided', 'it has not been answered well on this host');
}

function failed(a: ReplayAnswer): boolean {
  return a.error !== undefined || (a.status !== undefined && a.status >= 500 && a.load !== true);
}

function answerText(a: ReplayAnswer): string {
  return a.status !== undefined ? `status ${a.status}` : (a.error ?? 'no answer');
}
