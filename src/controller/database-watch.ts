import type { VolumeStatus } from '../shared/contracts.ts';
import type { EventRecord } from '../state/state-store.ts';

type NewEvent = Omit<EventRecord, 'id' | 'at'>;

/**
 * Events about the databases of primary volumes, from the storage processors' status
 * (polled by the controller). A database whose changes stop reaching the replica
 * (DatabaseStatus.protected false) raises `database-unprotected`, naming the file and
 * why, once, and `database-protected` once it is replicated again; the site is
 * reported `degraded` meanwhile (status-view.ts). A database replicated by snapshots
 * rather than WAL frames raises `database-snapshots` once (per way of shipping it),
 * saying why and what it means for the lag and for sync mode.
 */
export class DatabaseWatch {
  /** `storage/site` → database path → what was last said about it. */
  private readonly said = new Map<string, Map<string, string>>();

  constructor(private readonly addEvent: (e: NewEvent) => void) {}

  /**
   * `current`: `storage` holds the site's recorded primary. A deposed primary's copy (its
   * shipping refused at the new epoch until it is demoted) says nothing about the site.
   */
  notice(storage: string, v: VolumeStatus, current: boolean): void {
    const key = `${storage}/${v.site}`;
    const dbs = v.role === 'primary' && current ? v.replication?.databases : undefined;
    if (!dbs) {
      this.said.delete(key);
      return;
    }
    const before = this.said.get(key) ?? new Map<string, string>();
    const now = new Map<string, string>();
    for (const d of dbs) {
      const state = !d.protected ? 'unprotected' : d.method === 'snapshots' ? 'snapshots' : d.method === 'wal-frames' ? 'wal-frames' : 'other';
      now.set(d.path, state);
      const was = before.get(d.path);
      if (was === state) continue;
      const where = `${v.site}: database ${d.path} on ${storage}`;
      const data = {
        storage,
        db: d.path,
        mode: d.mode,
        method: d.method,
        ...(d.reason ? { reason: d.reason } : {}),
        ...(d.lastError ? { error: d.lastError } : {}),
      };
      if (state === 'unprotected') {
        this.addEvent({
          site: v.site,
          host: null,
          kind: 'database-unprotected',
          message: `${where} is not being replicated: ${d.lastError ?? d.reason ?? d.state}; the site is degraded until it is`,
          data,
        });
      } else if (was === 'unprotected') {
        this.addEvent({ site: v.site, host: null, kind: 'database-protected', message: `${where} is replicated again (${d.method})`, data });
      } else if (state === 'snapshots') {
        this.addEvent({
          site: v.site,
          host: null,
          kind: 'database-snapshots',
          message: `${where} is replicated by consistent snapshots, not WAL frames (${d.reason ?? d.mode}): its lag is the time to take and ship one image; in sync mode each write waits for one`,
          data,
        });
      }
    }
    this.said.set(key, now);
  }
}
