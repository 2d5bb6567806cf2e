import type { UnderstudyConfig } from '../config/types.ts';
import type { StorageStatus, VolumeStatus } from '../shared/contracts.ts';
import { background } from '../shared/background.ts';
import type { StateStore } from '../state/state-store.ts';
import type { PartClients } from './clients.ts';
import { DatabaseWatch } from './database-watch.ts';

/** How often every storage processor's status is read. */
export const STORAGE_POLL_MS = 250;

export interface StorageWatchDeps {
  config: UnderstudyConfig;
  clients: PartClients;
  store: StateStore;
  /** A site's primary copy on `storage` failed verification (a new episode). */
  onPrimaryCorrupt: (site: string, storage: string) => void;
  /** Every status read, as it arrives (the fencing refusals it reports). */
  onStatus?: (storage: string, st: StorageStatus) => void;
  onError: (err: unknown) => void;
}

/**
 * The controller's view of its storage processors: each one's status, read every
 * 250 ms (null while it does not answer), and the events that status raises — a copy
 * that fails verification (`corruption-detected`, then `verification-ok`), databases that
 * are not replicated or replicated by snapshots (database-watch.ts).
 */
export class StorageWatch {
  private readonly statuses = new Map<string, StorageStatus | null>();
  /** The volumes of each status by site: looked up per site by status and reconcile, so not searched. */
  private readonly volumes = new Map<string, Map<string, VolumeStatus>>();
  /** `storage/site` → the last verification result seen: an event only when it changes. */
  private readonly lastVerification = new Map<string, boolean>();
  private readonly databaseWatch: DatabaseWatch;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: StorageWatchDeps) {
    this.databaseWatch = new DatabaseWatch((e) => deps.store.addEvent(e));
  }

  /** Reads every status once, then every STORAGE_POLL_MS. */
  async start(): Promise<void> {
    this.timer = setInterval(() => background(this.poll(), this.deps.onError), STORAGE_POLL_MS);
    await this.poll();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The site's volume on `storage` as last read, or undefined (unknown, or that storage processor is down). */
  volume(storage: string, site: string): VolumeStatus | undefined {
    return this.volumes.get(storage)?.get(site);
  }

  /** Whether `storage` answered its last status read. */
  up(storage: string): boolean {
    return !!this.statuses.get(storage);
  }

  private async poll(): Promise<void> {
    const { config, clients, store } = this.deps;
    let primaries: Map<string, string> | null = null;
    await Promise.all(
      Object.keys(config.storage).map(async (name) => {
        try {
          const st = await clients.storageStatus(name, 500);
          this.statuses.set(name, st);
          this.deps.onStatus?.(name, st);
          this.volumes.set(name, new Map(st.volumes.map((v) => [v.site, v])));
          // Every site's primary, read once a poll (not once per volume).
          primaries ??= new Map(store.listSites().map((r) => [r.site, r.primaryHost]));
          for (const v of st.volumes) {
            this.noticeVerification(name, v);
            const primary = primaries.get(v.site);
            this.databaseWatch.notice(name, v, primary !== undefined && config.hosts[primary]?.storage === name);
          }
        } catch {
          this.statuses.set(name, null);
          this.volumes.delete(name);
        }
      }),
    );
  }

  /**
   * A verification that fails raises an event at once (and one when the copy is good
   * again); a corrupt primary copy is handed on to be replaced.
   */
  private noticeVerification(storage: string, v: VolumeStatus): void {
    if (!v.verification) return;
    const key = `${storage}/${v.site}`;
    const before = this.lastVerification.get(key);
    this.lastVerification.set(key, v.verification.ok);
    if (before === v.verification.ok || (before === undefined && v.verification.ok)) return;
    const { store } = this.deps;
    if (!v.verification.ok) {
      const problems = v.verification.problems.map((p) => `${p.file}: ${p.kind}${p.detail ? ` (${p.detail})` : ''}`).join('; ');
      store.addEvent({
        site: v.site,
        host: null,
        kind: 'corruption-detected',
        message: `the ${v.role} copy of ${v.site} on ${storage} failed verification: ${problems}`,
        data: { storage, role: v.role, verification: v.verification },
      });
      if (v.role === 'primary') this.deps.onPrimaryCorrupt(v.site, storage);
    } else {
      store.addEvent({
        site: v.site,
        host: null,
        kind: 'verification-ok',
        message: `the ${v.role} copy of ${v.site} on ${storage} verifies again`,
        data: { storage, role: v.role },
      });
    }
  }
}
