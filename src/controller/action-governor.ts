/**
 * The no-flapping rules (docs/architecture.md): every automatic
 * action has a reason, a rate limit and hysteresis. The governor holds the memory
 * those rules need and answers, for one proposed action, allowed or deferred and why.
 *
 * - Cooldown: one automatic action of a kind per site per `cooldownMs[action]`. The
 *   failover cooldown protects against flapping between the same hosts, not against
 *   an independent crash: a failover whose evidence is hard (the process is gone, or
 *   its port refuses connections), of a primary that is not where the last failover
 *   came from, to a trusted host other than that one, runs at once (see `FailoverFacts`).
 * - Trust: a host that failed is trusted again only after `rise` good probes in a row.
 * - Flapping: a host that fails again within `flapWindowMs` of being trusted is held
 *   out, even if its probes are good, for `backoffBaseMs`, then twice that at the
 *   next flap, and so on up to `backoffMaxMs`. A host trusted for `flapWindowMs`
 *   without failing is forgiven (its flap count returns to 0).
 *
 * Pure state: no timers; time comes from `now`. Nothing here is persisted: a new
 * controller starts with every host trusted and no cooldown running.
 */

/** Automatic actions a controller takes. Others may be named; they get `defaultCooldownMs`. */
export type AutoAction = 'failover' | 'failback' | 'scale-out' | 'scale-in' | 'restore' | (string & {});

export interface ActionGovernorOptions {
  /** Cooldown per action. @default { failover: 30000, failback: 300000, 'scale-out': 30000, 'scale-in': 120000, restore: 300000 } */
  cooldownMs?: Partial<Record<AutoAction, number>>;
  /** Cooldown of an action not in `cooldownMs`. @default 30000 */
  defaultCooldownMs?: number;
  /** Good probes in a row before a failed host is trusted (the site's `probe.rise`). */
  rise: number;
  /** A failure this soon after a host became trusted is a flap. @default 300000 */
  flapWindowMs?: number;
  /** Hold-out after the first flap; doubles at every further flap. @default 30000 */
  backoffBaseMs?: number;
  /** @default 600000 */
  backoffMaxMs?: number;
  /** @default Date.now */
  now?: () => number;
  /**
   * Where the governor's memory (host trust, flaps and hold-outs, each site's last
   * actions) is kept: loaded at construction, saved after every change. A controller
   * that takes over (restarted, or another one leading) then remembers what this one
   * knew: a host that flapped stays held out. Absent: memory in the process only.
   */
  memory?: { load(): GovernorMemory | null; save(m: GovernorMemory): void };
}

/** What the governor remembers, as it is kept in the state store. */
export interface GovernorMemory {
  hosts: Record<string, HostRecord>;
  lastAction: Record<string, number>;
  lastSource: Record<string, string | null>;
}

export const DEFAULT_COOLDOWN_MS: Readonly<Record<string, number>> = {
  failover: 30_000,
  failback: 300_000,
  'scale-out': 30_000,
  'scale-in': 120_000,
  restore: 300_000,
};

export interface HostTrust {
  host: string;
  /** `trusted`: may be chosen; `recovering`: failed, waiting for `rise` good probes; `held-out`: flapped, waiting for its backoff. */
  state: 'trusted' | 'recovering' | 'held-out';
  trusted: boolean;
  goodProbes: number;
  rise: number;
  /** Flaps counted since the host was last forgiven. */
  flaps: number;
  /** End of the hold-out (null: none running). */
  heldUntil: number | null;
  lastFailureAt: number | null;
  trustedSince: number | null;
  why: string;
}

export type DeferCode = 'cooldown' | 'host-held-out' | 'host-untrusted' | 'no-reason';

/** What a failover decision knows of the failure: what the cooldown's flap rule needs. */
export interface FailoverFacts {
  /** The failing primary. Recorded as the source of this failover when it is allowed. */
  from: string;
  /** The evidence is a crash beyond doubt: the process is gone, or its port refuses connections. */
  hardEvidence: boolean;
  /** The trusted hosts the failover could go to. */
  targets: readonly string[];
}

export type GovernorDecision =
  | {
      allowed: true;
      site: string;
      action: AutoAction;
      reason: string;
      target: string | null;
      at: number;
      why: string;
      /**
       * Hosts the action must not go to while another will do: the last failover's source,
       * when this failover was let through its cooldown as an independent crash.
       */
      avoid?: string[];
    }
  | {
      allowed: false;
      site: string;
      action: AutoAction;
      reason: string;
      target: string | null;
      at: number;
      why: string;
      code: DeferCode;
      /** When asking again may succeed; null when it depends on probes, not time. */
      retryAt: number | null;
    };

export interface HostRecord {
  trusted: boolean;
  /** When it became trusted after a failure; null for a host that never failed. */
  trustedSince: number | null;
  goodProbes: number;
  /** When `goodProbes` reached `rise` (trust then waits only for the hold-out). */
  roseAt: number | null;
  flaps: number;
  heldUntil: number | null;
  lastFailureAt: number | null;
}

export class ActionGovernor {
  private readonly now: () => number;
  private readonly cooldown: Record<string, number>;
  private readonly defaultCooldownMs: number;
  private readonly flapWindowMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly lastAction = new Map<string, number>();
  /** Per site, the host its last failover came from (null: not known, e.g. a failover for a corrupt copy of unknown origin). */
  private readonly lastSource = new Map<string, string | null>();
  /** Per site and action, when a caller gave one (e.g. the site's `scale.cooldown`). */
  private readonly siteCooldown = new Map<string, number>();
  private readonly hosts = new Map<string, HostRecord>();

  constructor(private readonly opts: ActionGovernorOptions) {
    if (!(opts.rise >= 1)) throw new RangeError('ActionGovernor: rise must be ≥ 1');
    this.now = opts.now ?? Date.now;
    this.cooldown = { ...DEFAULT_COOLDOWN_MS };
    for (const [k, v] of Object.entries(opts.cooldownMs ?? {})) if (v !== undefined) this.cooldown[k] = v;
    this.defaultCooldownMs = opts.defaultCooldownMs ?? 30_000;
    this.flapWindowMs = opts.flapWindowMs ?? 300_000;
    this.backoffBaseMs = opts.backoffBaseMs ?? 30_000;
    this.backoffMaxMs = opts.backoffMaxMs ?? 600_000;
    const m = opts.memory?.load();
    if (m) {
      for (const [h, r] of Object.entries(m.hosts)) this.hosts.set(h, { ...r });
      for (const [k, v] of Object.entries(m.lastAction)) this.lastAction.set(k, v);
      for (const [k, v] of Object.entries(m.lastSource)) this.lastSource.set(k, v);
    }
    this.saved = this.snapshot();
  }

  /** The memory as last saved (JSON): a change is saved once, not at every probe. */
  private saved: string;

  private snapshot(): string {
    return JSON.stringify({
      hosts: Object.fromEntries(this.hosts),
      lastAction: Object.fromEntries(this.lastAction),
      lastSource: Object.fromEntries(this.lastSource),
    } satisfies GovernorMemory);
  }

  /** Saves the memory when it changed (see `memory`). */
  private keep(): void {
    if (!this.opts.memory) return;
    const now = this.snapshot();
    if (now === this.saved) return;
    this.saved = now;
    this.opts.memory.save(JSON.parse(now) as GovernorMemory);
  }

  /**
   * May `action` run on `site` now, for `reason`? With `target`, the host the
   * action would use (failover/failback target, scale-out host) must be trusted.
   * `cooldownMs` sets this site's cooldown of `action` (kept for later calls and
   * `cooldownLeft`), overriding the governor-wide one. With `failover` (a failover's
   * facts), an independent crash passes the cooldown (`independent`), and the
   * failover's source is remembered for the next decision.
   * An allowed answer starts the action's cooldown at once: asking is committing,
   * so two callers cannot both be allowed. A deferred answer changes nothing.
   */
  decide(site: string, action: AutoAction, reason: string, opts: { target?: string; cooldownMs?: number; failover?: FailoverFacts } = {}): GovernorDecision {
    const at = this.now();
    if (opts.cooldownMs !== undefined) this.siteCooldown.set(key(site, action), opts.cooldownMs);
    const target = opts.target ?? null;
    const base = { site, action, reason, target, at };
    if (reason.trim() === '') return { ...base, allowed: false, code: 'no-reason', retryAt: null, why: 'an automatic action needs a reason' };
    if (target !== null) {
      const t = this.trust(target);
      if (t.state === 'held-out') return { ...base, allowed: false, code: 'host-held-out', retryAt: t.heldUntil, why: t.why };
      if (t.state === 'recovering') return { ...base, allowed: false, code: 'host-untrusted', retryAt: null, why: t.why };
    }
    const left = this.cooldownLeft(site, action);
    const record = (): void => {
      this.lastAction.set(key(site, action), at);
      if (opts.failover) this.lastSource.set(site, opts.failover.from);
      else if (action === 'failover') this.lastSource.set(site, null);
      this.keep();
    };
    if (left > 0) {
      const last = this.lastAction.get(key(site, action))!;
      const cooling = `the last ${action} of ${site} was ${at - last} ms ago; the cooldown is ${this.cooldownOf(site, action)} ms (${left} ms left)`;
      const ind = action === 'failover' && opts.failover ? this.independent(site, opts.failover) : null;
      if (ind?.independent) {
        record();
        return { ...base, allowed: true, why: `${cooling}, but ${ind.why}`, avoid: ind.avoid };
      }
      return { ...base, allowed: false, code: 'cooldown', retryAt: at + left, why: ind ? `${cooling}; not an independent crash: ${ind.why}` : cooling };
    }
    record();
    return {
      ...base,
      allowed: true,
      why: target !== null ? `no ${action} of ${site} within the cooldown, and ${target} is trusted` : `no ${action} of ${site} within the cooldown`,
    };
  }

  /**
   * The flap rule of the failover cooldown. A failover within the cooldown is a flap
   * when it would run between the hosts of the last one: its primary is where the
   * last failover came from, or its only trusted targets are. Otherwise, with hard
   * evidence (a crash: process gone, connection refused), it is an independent crash
   * and runs at once, avoiding the last failover's source. Soft evidence (a hang, a
   * malfunction, timeouts) keeps the cooldown: a sick host can look like that for a while.
   */
  independent(site: string, f: FailoverFacts): { independent: true; why: string; avoid: string[] } | { independent: false; why: string } {
    const source = this.lastSource.get(site) ?? null;
    if (!f.hardEvidence)
      return {
        independent: false,
        why: `the evidence against ${f.from} is not hard (a process gone or connections refused), and the cooldown holds for anything else`,
      };
    if (source === null) return { independent: false, why: `where the last failover of ${site} came from is not known` };
    if (f.from === source) return { independent: false, why: `${f.from} is where the last failover came from: ${site} would flap between the same hosts` };
    const others = f.targets.filter((t) => t !== source);
    if (others.length === 0) {
      return {
        independent: false,
        why:
          f.targets.length === 0
            ? `no trusted host could take ${site} over`
            : `its only trusted target is ${source}, where the last failover came from: ${site} would flap between ${source} and ${f.from}`,
      };
    }
    return {
      independent: true,
      why: `this is an independent crash: hard evidence against ${f.from}, which is not where the last failover came from (${source}), and ${others.join(', ')} can take ${site} over (${source} is avoided)`,
      avoid: [source],
    };
  }

  /** Restarts an action's cooldown, e.g. when its runbook ends, so that the gap counts from the end. */
  completed(site: string, action: AutoAction): void {
    this.lastAction.set(key(site, action), this.now());
    this.keep();
  }

  /** Milliseconds until `action` on `site` is out of its cooldown (0: it is). */
  cooldownLeft(site: string, action: AutoAction): number {
    const last = this.lastAction.get(key(site, action));
    if (last === undefined) return 0;
    return Math.max(0, last + this.cooldownOf(site, action) - this.now());
  }

  /**
   * A host failed (a detector raised crash/hang/malfunction against it, or it was
   * fenced). Failing again soon after being trusted is a flap and starts a hold-out.
   */
  hostFailed(host: string): HostTrust {
    const at = this.now();
    const h = this.record(host);
    this.settle(h, at);
    if (h.trusted) {
      if (h.trustedSince !== null && at - h.trustedSince <= this.flapWindowMs) {
        h.flaps++;
        h.heldUntil = at + this.backoff(h.flaps);
      } else {
        // Never failed before, or stable for a whole flap window: forgiven.
        h.flaps = 0;
        h.heldUntil = null;
      }
    }
    h.trusted = false;
    h.trustedSince = null;
    h.goodProbes = 0;
    h.roseAt = null;
    h.lastFailureAt = at;
    this.keep();
    return this.view(host, h, at);
  }

  /** One probe of a host (good or not). Bad probes restart the count of good ones; they are not failures by themselves. */
  hostProbe(host: string, ok: boolean): HostTrust {
    const at = this.now();
    const h = this.record(host);
    // Probes come many times a second: the memory is saved only when one changed something (a recovering host's count).
    const before = recordKey(h);
    if (!ok) {
      h.goodProbes = 0;
      h.roseAt = null;
    } else if (!h.trusted) {
      h.goodProbes++;
      if (h.goodProbes >= this.opts.rise) h.roseAt ??= at;
    }
    this.settle(h, at);
    if (recordKey(h) !== before) this.keep();
    return this.view(host, h, at);
  }

  trust(host: string): HostTrust {
    const at = this.now();
    const h = this.record(host);
    this.settle(h, at);
    return this.view(host, h, at);
  }

  /** The hold-out after the n-th flap: base × 2^(n−1), capped. */
  backoff(flaps: number): number {
    return Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.max(0, flaps - 1));
  }

  /** The cooldown of `action` on `site`: the one its last caller gave, else the action's, else the default. */
  cooldownOf(site: string, action: AutoAction): number {
    return this.siteCooldown.get(key(site, action)) ?? this.cooldown[action] ?? this.defaultCooldownMs;
  }

  private record(host: string): HostRecord {
    let h = this.hosts.get(host);
    if (!h) {
      h = { trusted: true, trustedSince: null, goodProbes: 0, roseAt: null, flaps: 0, heldUntil: null, lastFailureAt: null };
      this.hosts.set(host, h);
    }
    return h;
  }

  /** A recovering host that has risen and served its hold-out becomes trusted; trust dates from the later of the two. */
  private settle(h: HostRecord, at: number): void {
    if (h.trusted || h.roseAt === null) return;
    if (h.heldUntil !== null && at < h.heldUntil) return;
    h.trusted = true;
    h.trustedSince = Math.max(h.roseAt, h.heldUntil ?? -Infinity);
    h.heldUntil = null;
  }

  private view(host: string, h: HostRecord, at: number): HostTrust {
    const rise = this.opts.rise;
    const base = { host, goodProbes: h.goodProbes, rise, flaps: h.flaps, heldUntil: h.heldUntil, lastFailureAt: h.lastFailureAt, trustedSince: h.trustedSince };
    if (h.trusted) {
      return {
        ...base,
        state: 'trusted',
        trusted: true,
        why: h.lastFailureAt === null ? `${host} has not failed` : `${host} came back: ${h.goodProbes} good probes in a row since its failure`,
      };
    }
    if (h.heldUntil !== null && at < h.heldUntil) {
      return {
        ...base,
        state: 'held-out',
        trusted: false,
        why: `${host} flapped (${h.flaps} time${h.flaps > 1 ? 's' : ''} failing within ${this.flapWindowMs} ms of being trusted): held out for ${h.heldUntil - at} ms more (backoff ${this.backoff(h.flaps)} ms)`,
      };
    }
    return { ...base, state: 'recovering', trusted: false, why: `${host} failed and has ${h.goodProbes} of ${rise} good probes in a row needed to be trusted` };
  }
}

/** A host record's fields in one string: whether a probe changed it. */
function recordKey(h: HostRecord): string {
  return `${h.trusted}|${h.trustedSince}|${h.goodProbes}|${h.roseAt}|${h.heldUntil}`;
}

function key(site: string, action: string): string {
  return `${site}\u0000${action}`;
}
