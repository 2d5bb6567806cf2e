import { performance } from 'node:perf_hooks';
import { UnderstudyError } from '../shared/errors.ts';
import type { EtcdClient } from '../state/etcd-client.ts';
import { checkLeaseTimings } from '../config/lease-timings.ts';

export { checkLeaseTimings };

/**
 * Which controller leads: a key in etcd held by a lease, as Patroni's HA loop holds its
 * leader key (https://patroni.readthedocs.io, "ttl, loop_wait, retry_timeout").
 *
 * - Every `loopMs` each controller runs `step()`. A follower tries to create the key
 *   (a transaction: only if it does not exist) bound to a lease of its own; one
 *   controller wins. The leader renews its lease, then checks, in one transaction, that
 *   the key is still its own under that lease.
 * - Timing rule (Patroni's): loop + 2 × retry ≤ ttl, where retry bounds one etcd call.
 *   Then a leader gets at least one full renewal attempt, through every member, before
 *   its lease can run out.
 * - A leader that cannot renew stops acting before its lease can expire: `holds()` is
 *   true only until the last successful renewal's *start* + ttl − retry (etcd started
 *   counting the renewed ttl after that start, so the key cannot be gone earlier; the
 *   retry margin leaves an action that checked `holds()` just before that time the
 *   length of one call to finish). No answer from etcd extends it.
 * - A lease is not a mutex (etcd's own docs; Jepsen's etcd analysis): a leader paused past
 *   its lease may still send a command. So each term has a fencing token, the leader
 *   key's create revision: etcd's revisions only grow, and a new leader creates the key
 *   anew, so a later leader always has a higher token. Parts refuse commands whose
 *   token is lower than the highest they have seen.
 * - `resign()` revokes the lease: the key goes at once, and a follower takes over at its
 *   next step instead of after the ttl.
 */
export interface LeaderLeaseOptions {
  client: EtcdClient;
  /** The leader key (`<prefix>/leader`). */
  key: string;
  /** This controller's name, stored as the key's value. */
  name: string;
  ttlMs: number;
  loopMs: number;
  /** Bound of one etcd call (the client's timeout per member). */
  retryMs: number;
  /** Called when this controller becomes leader or stops being one. */
  onChange?: (leader: boolean, token: number | null) => void;
}

export type LeaseView =
  | { role: 'leader'; token: number; validUntil: number }
  | { role: 'follower'; leader: string | null; token: number | null }
  | { role: 'unknown'; since: number; error: string };

export class LeaderLease {
  private lease: string | null = null;
  private token: number | null = null;
  /** performance.now() until which this controller may act as leader (0: not leader). */
  private validUntil = 0;
  private view: LeaseView = { role: 'unknown', since: Date.now(), error: 'not asked yet' };
  private timer: NodeJS.Timeout | null = null;
  /** Fires when the deadline passes without a renewal: the term ends here, not at the next step. */
  private expiry: NodeJS.Timeout | null = null;
  private stepping: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly o: LeaderLeaseOptions) {
    const bad = checkLeaseTimings(o);
    if (bad) throw new UnderstudyError('US_CONFIG_INVALID', `leader lease: ${bad}`);
  }

  /** True while this controller leads and its lease cannot have run out (see the class comment). */
  holds(now = performance.now()): boolean {
    return this.token !== null && now < this.validUntil;
  }

  /** The fencing token of this controller's term, while it holds the lease. */
  fencingToken(): number | null {
    return this.holds() ? this.token : null;
  }

  status(): LeaseView {
    if (this.view.role === 'leader' && !this.holds()) return { role: 'unknown', since: Date.now(), error: 'the lease could not be renewed in time' };
    return this.view;
  }

  start(): void {
    const tick = (): void => {
      if (this.stopped) return;
      this.stepping = this.step().finally(() => {
        this.stepping = null;
        if (!this.stopped) this.timer = setTimeout(tick, this.o.loopMs);
      });
    };
    tick();
  }

  /** Stops the loop; with `resign`, gives the key up at once (a clean shutdown). */
  async stop(resign = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.stepping;
    if (resign) await this.resign();
  }

  /** One iteration of the loop: renew (leader) or try to take the key (follower). */
  async step(): Promise<void> {
    const started = performance.now();
    try {
      if (this.lease !== null && this.token !== null) {
        const ttl = await this.o.client.leaseKeepAlive(this.lease);
        // Still ours: the key exists under our lease with our name (nobody deleted or replaced it).
        const r =
          ttl > 0
            ? await this.o.client.txn(
                [
                  { key: this.o.key, target: 'LEASE', lease: this.lease },
                  { key: this.o.key, target: 'CREATE', createRevision: this.token },
                ],
                [],
              )
            : null;
        if (r?.succeeded) {
          this.renewed(started);
          return;
        }
        this.lost();
        // Fall through: the key may be free now.
      }
      await this.campaign(started);
    } catch (e) {
      // No answer: a leader keeps its deadline (holds() runs out by itself), a follower stays one.
      const error = e instanceof Error ? e.message : String(e);
      if (this.view.role !== 'unknown') this.view = { role: 'unknown', since: Date.now(), error };
      else this.view = { ...this.view, error };
      if (this.token !== null && !this.holds()) this.lost();
    }
  }

  private async campaign(started: number): Promise<void> {
    const lease = await this.o.client.leaseGrant(this.o.ttlMs / 1000);
    let r;
    try {
      r = await this.o.client.txn(
        [{ key: this.o.key, target: 'CREATE', createRevision: 0 }],
        [{ put: { key: this.o.key, value: this.o.name, lease } }, { range: { key: this.o.key } }],
        [{ range: { key: this.o.key } }],
      );
    } catch (e) {
      await this.o.client.leaseRevoke(lease).catch(() => undefined);
      throw e;
    }
    const holder = r.succeeded ? r.ranges[1]?.[0] : r.ranges[0]?.[0];
    if (r.succeeded && holder) {
      this.lease = lease;
      this.token = holder.createRevision;
      this.renewed(started);
      this.o.onChange?.(true, this.token);
      return;
    }
    await this.o.client.leaseRevoke(lease).catch(() => undefined);
    this.view = { role: 'follower', leader: holder?.value ?? null, token: holder?.createRevision ?? null };
  }

  private renewed(started: number): void {
    this.validUntil = started + this.o.ttlMs - this.o.retryMs;
    this.view = { role: 'leader', token: this.token!, validUntil: Date.now() + (this.validUntil - performance.now()) };
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = setTimeout(
      () => {
        if (this.token !== null && !this.holds()) this.lost();
      },
      Math.max(0, this.validUntil - performance.now()) + 1,
    );
    this.expiry.unref();
  }

  private lost(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = null;
    const was = this.token !== null;
    this.lease = null;
    this.token = null;
    this.validUntil = 0;
    if (was) this.o.onChange?.(false, null);
  }

  /**
   * Gives the key up at once (the lease revoked), and goes on stepping as a follower: a
   * leader that cannot act (its term could not start) lets another take over.
   */
  async resign(): Promise<void> {
    const lease = this.lease;
    this.lost();
    if (lease !== null) await this.o.client.leaseRevoke(lease).catch(() => undefined);
  }
}
