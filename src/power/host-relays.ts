import type { UnderstudyConfig } from '../config/types.ts';
import type { StateStore } from '../state/state-store.ts';
import { IpmiRelay } from './ipmi-relay.ts';
import { LocalRelay } from './local-relay.ts';
import type { RelayDriver, RelayStatus } from './relay.ts';

/**
 * The relay of every host, each through the driver its config names
 * (`hosts.X.power`: `local` or `{ ipmi: … }`). Only the `local` driver knows a pid:
 * for a host on another machine it is null, and its process's liveness is unknown.
 */
export class HostRelays implements RelayDriver {
  private readonly local: LocalRelay;
  private readonly ipmi: IpmiRelay;

  constructor(private readonly config: UnderstudyConfig, store: StateStore, logDir: string) {
    this.local = new LocalRelay(config, store, logDir);
    this.ipmi = new IpmiRelay(config, store);
  }

  private driver(host: string): RelayDriver {
    const h = this.config.hosts[host];
    return h && h.power !== 'local' ? this.ipmi : this.local;
  }

  on(host: string): Promise<RelayStatus> { return this.driver(host).on(host); }
  off(host: string): Promise<RelayStatus> { return this.driver(host).off(host); }
  status(host: string): RelayStatus { return this.driver(host).status(host); }
}
