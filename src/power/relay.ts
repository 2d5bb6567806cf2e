/**
 * A relay is a host's power switch. `off` is a hard cut that the driver must
 * confirm (the host can no longer write anything); `on` boots the host.
 * Drivers: `local` (embedded hosts: process groups); later ipmi and redfish.
 */
export interface RelayStatus {
  host: string;
  power: 'on' | 'off';
  /** Process-group leader of an embedded host; null when off or not embedded. */
  pid: number | null;
}

export interface RelayDriver {
  /** Boots the host; resolves once its process exists (not once it is healthy). Idempotent. */
  on(host: string): Promise<RelayStatus>;
  /** Cuts power and resolves only once the cut is confirmed; throws US_FENCE_UNCONFIRMED otherwise. Idempotent. */
  off(host: string): Promise<RelayStatus>;
  status(host: string): RelayStatus;
}
