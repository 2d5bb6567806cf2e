import type { ConnErrorSignal } from '../shared/contracts.ts';
import { callJson } from '../shared/http-client.ts';
import type { DirectorLogger } from './logger.ts';

/**
 * Tells the controller at once that an upstream refused or broke a connection,
 * so that detection does not wait for the next probe (failover runbook, step 1).
 *
 * Fire and forget: the request path never awaits it, a short timeout bounds it,
 * and a burst of failures (every request of a busy site fails at the same moment)
 * sends at most one signal per upstream per `minIntervalMs`.
 */
export class ConnErrorSignaller {
  private readonly lastSentAt = new Map<string, number>();

  /**
   * @param controllerUrl base URL of the controller API, or of each controller where
   *   several elect a leader (followers refuse it; the leader acts); undefined = signals off.
   * @param minIntervalMs at most one signal per upstream in this interval. @default 50
   * @param timeoutMs how long one signal may take. @default 500
   */
  constructor(
    private readonly controllerUrl: string | string[] | undefined,
    private readonly logger: DirectorLogger,
    private readonly minIntervalMs = 50,
    private readonly timeoutMs = 500,
  ) {}

  signal(site: string, upstream: string, error: string): void {
    if (this.controllerUrl === undefined) return;
    const now = Date.now();
    const key = `${site}\u0000${upstream}`;
    const last = this.lastSentAt.get(key);
    if (last !== undefined && now - last < this.minIntervalMs) return;
    this.lastSentAt.set(key, now);
    const body: ConnErrorSignal = { kind: 'conn-error', site, upstream, at: now, error };
    for (const url of typeof this.controllerUrl === 'string' ? [this.controllerUrl] : this.controllerUrl) {
      callJson(`${url}/v1/signals`, { method: 'POST', body, timeoutMs: this.timeoutMs }).catch((e: unknown) => {
        this.logger.debug({ site, upstream, controller: url, err: e instanceof Error ? e.message : String(e) }, 'conn-error signal not delivered');
      });
    }
  }
}
