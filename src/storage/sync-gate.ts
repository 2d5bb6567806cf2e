import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { SyncBarrierResponse, SyncReplicaLost, VolumeSyncState } from '../shared/contracts.ts';
import type { VolumeShipper } from './volume-shipper.ts';
import { background } from '../shared/background.ts';

/**
 * Sync mode on one primary volume: answers the director's "is everything committed so
 * far on the replica's disk?" (POST /v1/volumes/:site/sync-barrier) and keeps the
 * volume's sync state, `sync` or `degraded`.
 *
 * - `sync`: a barrier waits for the shipper's catch-up (VolumeShipper.catchUp) up to
 *   `timeoutMs`. If the shipper is replaced or not there yet (re-protect in progress)
 *   it keeps trying with the current one until the deadline.
 * - Deadline missed, `degrade`: the volume becomes `degraded` (with since and reason)
 *   and the barrier answers `degraded`: the director releases the answer unconfirmed.
 *   Later `degrade` barriers answer `degraded` at once; a background loop returns the
 *   volume to `sync` as soon as a catch-up succeeds with the shipper streaming, i.e.
 *   the replica holds everything committed before that catch-up began.
 * - Deadline missed, `strict`: the barrier answers `timeout` (the director answers 503
 *   US_SYNC_TIMEOUT) and the state is left alone: strict never releases an
 *   unconfirmed write, so every strict barrier waits for the replica, bounded.
 *
 * The mode comes with each request (the controller's route carries it), so a config
 * change takes effect without restarting the storage processor.
 */
export class SyncGate {
  private state: VolumeSyncState['state'] = 'sync';
  private since = Date.now();
  private reason: string | undefined;
  /** A barrier was asked for at least once: the volume is used in sync mode. */
  used = false;
  private recovering = false;
  private closed = false;

  constructor(
    private readonly site: string,
    private readonly shipperOf: () => VolumeShipper | null,
    private readonly log: Logger,
  ) {}

  status(): VolumeSyncState {
    return { state: this.state, since: this.since, ...(this.reason !== undefined ? { reason: this.reason } : {}) };
  }

  async barrier(onReplicaLost: SyncReplicaLost, timeoutMs: number): Promise<SyncBarrierResponse> {
    this.used = true;
    const t0 = performance.now();
    const waited = (): number => Math.round((performance.now() - t0) * 1000) / 1000;
    if (this.state === 'degraded' && onReplicaLost === 'degrade') return { state: 'degraded', waitedMs: 0, reason: this.reason ?? 'degraded' };
    const deadline = t0 + timeoutMs;
    let why = 'the volume is not replicating (no replica set up)';
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      const shipper = this.shipperOf();
      if (shipper === null) {
        await delay(Math.min(25, left));
        continue;
      }
      const r = await raceTimeout(shipper.catchUp(), left);
      if (r === 'ok') return { state: 'sync', waitedMs: waited() };
      const st = shipper.status();
      why = `replica ${st.to} did not confirm within ${timeoutMs} ms (replication ${st.state}${st.lastError ? `: ${st.lastError}` : ''})`;
      if (r === 'timeout') break;
      // The shipper stopped (replaced or demoted): try the next one until the deadline.
      if (this.shipperOf() === shipper) await delay(Math.min(25, Math.max(0, deadline - performance.now())));
    }
    if (onReplicaLost === 'strict') return { state: 'timeout', waitedMs: waited(), reason: why };
    this.degrade(why);
    return { state: 'degraded', waitedMs: waited(), reason: why };
  }

  /** Stops the recovery loop (the volume stopped being a primary here, or shutdown). */
  close(): void {
    this.closed = true;
  }

  private degrade(reason: string): void {
    if (this.state === 'degraded') return;
    this.state = 'degraded';
    this.since = Date.now();
    this.reason = reason;
    this.log.warn({ site: this.site, reason }, 'sync replication degraded: writes are acknowledged before the replica confirms them, until it has caught up');
    background(this.recover(), (err) => this.log.error({ err, site: this.site }, 'sync replication: recovery failed; it is tried again at the next degrade'));
  }

  private async recover(): Promise<void> {
    if (this.recovering) return;
    this.recovering = true;
    try {
      while (this.state === 'degraded' && !this.closed) {
        const shipper = this.shipperOf();
        if (shipper !== null && shipper.status().state === 'streaming') {
          const r = await raceTimeout(shipper.catchUp(), 5000);
          if (r === 'ok' && shipper.status().state === 'streaming' && this.shipperOf() === shipper) {
            const was = this.since;
            this.state = 'sync';
            this.since = Date.now();
            this.reason = undefined;
            this.log.info({ site: this.site, degradedMs: this.since - was }, 'sync replication restored: the replica has caught up');
            return;
          }
        }
        await delay(100);
      }
    } finally {
      this.recovering = false;
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** 'ok' when `p` resolves within `ms`, 'timeout' when not, 'failed' when it rejects. */
function raceTimeout(p: Promise<void>, ms: number): Promise<'ok' | 'timeout' | 'failed'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    p.then(
      () => {
        clearTimeout(timer);
        resolve('ok');
      },
      () => {
        clearTimeout(timer);
        resolve('failed');
      },
    );
  });
}
