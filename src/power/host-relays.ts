import type { UnderstudyConfig } from '../config/types.ts';
import type { StateStore } from '../state/state-store.ts';
import { IpmiRelay } from './ipmi-relay.ts';
import { LocalRelay } from './local-relay.ts';
import type { RelayDriver, RelayStatus } from './relay.ts';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * The relay of every host, each through the driver its config names
 * (`hosts.X.power`: `local` or `{ ipmi: … }`). Only the `local` driver knows a pid:
 * for a host on another machine it is null, and its process's liveness is unknown.
 */
export class HostRelays implements RelayDriver {
  private readonly local: LocalRelay;
  private readonly ipmi: IpmiRelay;

  /**
   * @param mayAct where controllers elect a leader: false once this controller's term
   *   ended. A BMC cannot check a fencing token, so a relay command is refused here instead.
   */
  constructor(
    private readonly config: UnderstudyConfig,
    store: StateStore,
    logDir: string,
    private readonly mayAct: () => boolean = () => true,
  ) {
    this.local = new LocalRelay(config, store, logDir);
    this.ipmi = new IpmiRelay(config, store);
  }

  private driver(host: string): RelayDriver {
    const h = this.config.hosts[host];
    return h && h.power !== 'local' ? this.ipmi : this.local;
  }

  private watchTimer: NodeJS.Timeout | null = null;

  /** Every `everyMs`, and once now, asks each BMC for its host's power (IpmiRelay.refresh). */
  watch(everyMs = 5000): void {
    const hosts = Object.values(this.config.hosts)
      .filter((h) => h.power !== 'local')
      .map((h) => h.name);
    if (hosts.length === 0 || this.watchTimer) return;
    const round = () => {
      for (const h of hosts) void this.ipmi.refresh(h).catch(() => undefined);
    };
    round();
    this.watchTimer = setInterval(round, everyMs);
  }

  unwatch(): void {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = null;
  }

  private refuseWithoutTerm(host: string, action: string): void {
    if (!this.mayAct())
      throw new UnderstudyError('US_STALE_LEADER', `this controller does not lead (no term of the leader lease): it does not power ${host} ${action}`);
  }

  async on(host: string): Promise<RelayStatus> {
    this.refuseWithoutTerm(host, 'on');
    return this.driver(host).on(host);
  }
  async off(host: string): Promise<RelayStatus> {
    this.refuseWithoutTerm(host, 'off');
    return this.driver(host).off(host);
  }
  status(host: string): RelayStatus {
    return this.driver(host).status(host);
  }
}
