import { request } from 'undici';
import type { Detection } from '../monitor/detection.ts';
import type { ErrorAttribution, Replay, ReplayAnswer } from '../monitor/error-attribution.ts';
import type { ProbeResult } from '../monitor/http-probe.ts';
import { loadSignal } from '../monitor/load-signal.ts';
import type { MalfunctionWatch } from '../monitor/malfunction-watch.ts';
import { classifyProbeError, probeFailed } from '../monitor/probe-evidence.ts';
import type { EventRecord } from '../state/state-store.ts';

/** An incident ends after this long without a malfunction found on the site (and at least QUIET_WINDOWS windows). */
const INCIDENT_QUIET_MS = 60_000;
const QUIET_WINDOWS = 10;

export interface MalfunctionTriageDeps {
  addEvent: (e: Omit<EventRecord, 'id' | 'at'>) => void;
  /** The hosts serving the site besides its primary (its readers), with their app's host:port. */
  others: (site: string) => { host: string; endpoint: string }[];
  /** Sends `GET path` to `endpoint` (host:port) once; never throws. @default an undici GET */
  replay?: (endpoint: string, path: string, timeoutMs: number) => Promise<ReplayAnswer>;
  now?: () => number;
}

export interface TriageInput {
  site: string;
  host: string;
  /** The primary's app, host:port. */
  endpoint: string;
  detection: Detection;
  /** The watch that raised (traffic), or the site's current one. */
  watch: MalfunctionWatch | undefined;
  /** The site monitor's newest probe of the primary. */
  lastProbe: ProbeResult | null;
  windowMs: number;
  probeTimeoutMs: number;
}

/** `fail-over`: act on the detection (its reason and data now name whose the errors are); `keep`: no failover, the events are written. */
export type TriageVerdict = { act: 'fail-over'; detection: Detection } | { act: 'keep'; why: 'request' | 'app' };

interface Incident {
  /** The primary the malfunction failover left. */
  from: string;
  openedAt: number;
  /** The last malfunction found on the site in this incident. */
  lastAt: number;
  quietMs: number;
  /** The failing kinds of request (traffic) that caused the failover, or the probe's wrong answers. */
  cause: string[];
  told: boolean;
}

/**
 * Decides, before any failover for a malfunction, whether the errors belong to
 * the host — the only errors a failover can cure:
 *
 * - A malfunction found by the probe (wrong answers to it) is the host's: the
 *   probe fails as well.
 * - A malfunction found in real traffic is judged by its kinds of request
 *   (error-attribution.ts), after sending a few of its failed idempotent requests
 *   again, to the primary and to any other host that serves the site. Errors that
 *   follow the request give one `errors-follow-request` event, their kinds leave
 *   the watch's rate, and nothing else happens.
 * - At most one malfunction failover per incident: once one ran, a malfunction on
 *   the new primary is the app's, not the host's — the same requests or the same
 *   probe fail there too. One `errors-follow-app` event, no further failover for
 *   that cause. The incident ends after a quiet period without any malfunction.
 *
 * Crashes, hangs and everything that is not a malfunction never come here.
 */
export class MalfunctionTriage {
  private readonly incidents = new Map<string, Incident>();
  private readonly now: () => number;
  private readonly replay: (endpoint: string, path: string, timeoutMs: number) => Promise<ReplayAnswer>;

  constructor(private readonly deps: MalfunctionTriageDeps) {
    this.now = deps.now ?? Date.now;
    this.replay = deps.replay ?? replayGet;
  }

  async triage(t: TriageInput): Promise<TriageVerdict> {
    const d = t.detection;
    const incident = this.openIncident(t.site);
    if (incident && incident.from !== t.host) {
      incident.lastAt = this.now();
      this.tellAppErrors(t, incident);
      // The watch that raised is armed again without these kinds (a site monitor that raised is replaced by the controller).
      if (d.source !== 'probe') t.watch?.excuse(this.failingOf(t));
      return { act: 'keep', why: 'app' };
    }
    if (d.source !== 'traffic' || !t.watch) return { act: 'fail-over', detection: d };
    const replays = await this.replayFailed(t);
    const attribution = t.watch.attribute(probeFailing(t.lastProbe), replays);
    if (!attribution || attribution.owner === 'host') {
      return { act: 'fail-over', detection: attribution ? withAttribution(d, attribution) : d };
    }
    const kinds = attribution.failing.map((f) => f.kind);
    t.watch.excuse(kinds);
    this.deps.addEvent({
      site: t.site,
      host: t.host,
      kind: 'errors-follow-request',
      message: `${t.site}: errors follow the request, not the host ${t.host}: ${attribution.reason}. No failover, no fencing: these requests would fail the same on any host; fix the client that sends them or the app. ${kinds.join(', ')} no longer count${kinds.length === 1 ? 's' : ''} towards ${t.host}'s error rate until ${kinds.length === 1 ? 'it goes' : 'they go'} a whole window without an error`,
      data: { ...d.data, attribution, excused: t.watch.excusedKinds },
    });
    return { act: 'keep', why: 'request' };
  }

  /** A failover for `detection` starts from `host`: a malfunction opens an incident (at most one such failover in it). */
  noteFailover(site: string, host: string, detection: Detection, windowMs: number): void {
    if (detection.failure !== 'malfunction') return;
    const now = this.now();
    const attribution = detection.data.attribution as ErrorAttribution | undefined;
    const cause = attribution?.failing.map((f) => f.kind) ?? [];
    this.incidents.set(site, { from: host, openedAt: now, lastAt: now, quietMs: Math.max(INCIDENT_QUIET_MS, QUIET_WINDOWS * windowMs), cause, told: false });
  }

  /** The site's open incident (for status and tests). */
  incident(site: string): { from: string; openedAt: number; cause: string[] } | null {
    const i = this.openIncident(site);
    return i ? { from: i.from, openedAt: i.openedAt, cause: [...i.cause] } : null;
  }

  private openIncident(site: string): Incident | undefined {
    const i = this.incidents.get(site);
    if (i && this.now() - i.lastAt > i.quietMs) {
      this.incidents.delete(site);
      return undefined;
    }
    return i;
  }

  private failingOf(t: TriageInput): string[] {
    if (t.detection.source !== 'traffic' || !t.watch) return [];
    return t.watch.attribute(null)?.failing.map((f) => f.kind) ?? [];
  }

  private tellAppErrors(t: TriageInput, incident: Incident): void {
    if (incident.told) return;
    incident.told = true;
    const now = this.failingOf(t);
    const same = now.filter((k) => incident.cause.includes(k));
    const what =
      t.detection.source === 'traffic'
        ? same.length > 0
          ? `${t.host} fails ${same.join(', ')} as ${incident.from} did`
          : `${t.host} fails too (${now.join(', ') || 'its traffic'})`
        : `${t.host}'s probe is answered wrongly too`;
    this.deps.addEvent({
      site: t.site,
      host: t.host,
      kind: 'errors-follow-app',
      message: `${t.site}: errors follow the app, not the host: after the malfunction failover from ${incident.from}, ${what} (${t.detection.reason}). No further failover for this cause (at most one per incident): fix the app or its data; automatic failover for crashes and hangs goes on`,
      data: { ...t.detection.data, source: t.detection.source, from: incident.from, incidentSince: incident.openedAt, cause: incident.cause, failing: now },
    });
  }

  private async replayFailed(t: TriageInput): Promise<Replay[]> {
    const wanted = t.watch?.replayable() ?? [];
    if (wanted.length === 0) return [];
    const others = this.deps.others(t.site);
    const out: Replay[] = [];
    for (const k of wanted) {
      for (const path of k.requests) {
        const [primary, ...elsewhere] = await Promise.all([
          this.replay(t.endpoint, path, t.probeTimeoutMs),
          ...others.map((o) => this.replay(o.endpoint, path, t.probeTimeoutMs)),
        ]);
        out.push({ kind: k.kind, request: path, primary: primary!, elsewhere: elsewhere.map((a, i) => ({ ...a, host: others[i]!.host })) });
      }
    }
    return out;
  }
}

/** Why the newest probe of the primary failed with a wrong answer, or null (it succeeded, or got no answer at all). */
function probeFailing(p: ProbeResult | null): string | null {
  if (!p || !probeFailed(p)) return null;
  return classifyProbeError(p.error) === 'bad-answer' ? (p.error ?? 'a wrong answer') : null;
}

function withAttribution(d: Detection, a: ErrorAttribution): Detection {
  return { ...d, reason: `${d.reason}; the host's errors: ${a.reason}`, data: { ...d.data, attribution: a } };
}

async function replayGet(endpoint: string, path: string, timeoutMs: number): Promise<ReplayAnswer> {
  try {
    const res = await request(`http://${endpoint}${path}`, {
      method: 'GET',
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body.dump().catch(() => undefined);
    return loadSignal(res.statusCode, res.headers['retry-after']) ? { status: res.statusCode, load: true } : { status: res.statusCode };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { error: typeof err.code === 'string' ? err.code : err.name };
  }
}
