import type { UnderstudyConfig } from '../config/types.ts';
import type { ActionGovernor, HostTrust } from './action-governor.ts';
import type { EventRecord } from '../state/state-store.ts';
import { background } from '../shared/background.ts';

/** How often hosts that are no site's primary are probed for trust, by default. */
export const HOST_TRUST_EVERY_MS = 500;

/** The sites' fastest probe interval, within 100 ms … 1 s: a host regains trust about as fast as a primary is judged. */
export function trustProbeEveryMs(config: UnderstudyConfig): number {
  const every = Math.min(HOST_TRUST_EVERY_MS, ...Object.values(config.sites).map((s) => s.health.probe.everyMs));
  return Math.max(100, Math.min(1000, every));
}
const AGENT_PROBE_TIMEOUT_MS = 300;

export interface HostTrustWatchDeps {
  governor: ActionGovernor;
  addEvent: (e: Omit<EventRecord, 'id' | 'at'>) => void;
  /** Every configured host. */
  hosts: () => string[];
  /** Current primaries (their site monitor probes them, or they are failing): not probed here. */
  primaries: () => Set<string>;
  powered: (host: string) => boolean;
  /** Resolves when the host's agent answers its status, rejects otherwise. */
  agentAnswers: (host: string, timeoutMs: number) => Promise<unknown>;
}

/**
 * Feeds the governor the probes that decide whether a host that failed is trusted
 * again (DESIGN "No flapping": a host that failed and came back is trusted only
 * after `rise` good probes). A primary's probes come from its site monitor (through
 * `probe`); every other host is probed here as often as the sites probe (100 ms … 1 s): a good probe is its agent
 * answering (a powered-off host's probe is bad, without asking). The agent, not the
 * app, because a standby runs no app; its app is probed once it is primary again.
 *
 * Records `host-trusted` when a host that was not trusted becomes trusted.
 */
export class HostTrustWatch {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly lastState = new Map<string, HostTrust['state']>();

  constructor(
    private readonly deps: HostTrustWatchDeps,
    private readonly everyMs = HOST_TRUST_EVERY_MS,
  ) {}

  start(): void {
    if (!this.timer) this.timer = setInterval(() => background(this.tick()), this.everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One probe of `host`, from here or from its site monitor. */
  probe(host: string, ok: boolean): HostTrust {
    const t = this.deps.governor.hostProbe(host, ok);
    const before = this.lastState.get(host) ?? 'trusted';
    this.lastState.set(host, t.state);
    if (t.state === 'trusted' && before !== 'trusted') {
      this.deps.addEvent({ site: null, host, kind: 'host-trusted', message: `${host} is trusted again: ${t.why}`, data: { trust: t } });
    }
    return t;
  }

  /** Records the state a failure left the host in, so that its return to trust is reported. */
  noteFailed(trust: HostTrust): void {
    this.lastState.set(trust.host, trust.state);
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const primaries = this.deps.primaries();
      await Promise.all(
        this.deps
          .hosts()
          .filter((h) => !primaries.has(h))
          .map(async (h) => {
            let ok = false;
            if (this.deps.powered(h)) {
              try {
                await this.deps.agentAnswers(h, AGENT_PROBE_TIMEOUT_MS);
                ok = true;
              } catch {
                ok = false;
              }
            }
            if (this.timer) this.probe(h, ok);
          }),
      );
    } finally {
      this.running = false;
    }
  }
}
