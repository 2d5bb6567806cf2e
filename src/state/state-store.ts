import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

/**
 * The controller's embedded state: per-site epoch and primary, the runbook journal,
 * the event log and the relays' record of which process group is each host.
 * SQLite in WAL mode with synchronous=FULL: a journal entry written before a step
 * survives a SIGKILL of the controller, which is what lets a restarted controller
 * resume a runbook at the step it stopped in and never promote twice.
 */

export type SiteState = 'starting' | 'serving' | 'degraded' | 'failing-over' | 'down';

export interface SiteRecord {
  site: string;
  epoch: number;
  primaryHost: string;
  state: SiteState;
  /** Storage system that holds the site's replica, or null when unprotected. */
  replicaStorage: string | null;
  updatedAt: number;
}

export interface RunbookRecord {
  id: number;
  site: string;
  kind: string;
  status: 'running' | 'done' | 'failed' | 'blocked';
  startedAt: number;
  finishedAt: number | null;
  /** The runbook's inputs and what earlier steps decided (target host, new epoch …). */
  data: Record<string, unknown>;
}

export interface JournalEntry {
  id: number;
  runbookId: number;
  step: string;
  phase: 'begin' | 'end' | 'error';
  at: number;
  data: Record<string, unknown>;
}

export interface EventRecord {
  id: number;
  at: number;
  site: string | null;
  host: string | null;
  kind: string;
  message: string;
  data: Record<string, unknown>;
}

export interface RelayRecord {
  host: string;
  pgid: number | null;
  power: 'on' | 'off';
  updatedAt: number;
}

export class StateStore {
  private readonly db: Database.Database;
  private readonly eventListeners = new Set<(e: EventRecord) => void>();

  constructor(stateDir: string) {
    fs.mkdirSync(stateDir, { recursive: true });
    this.db = new Database(path.join(stateDir, 'understudy.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS sites (
        site TEXT PRIMARY KEY, epoch INTEGER NOT NULL, primary_host TEXT NOT NULL,
        state TEXT NOT NULL, replica_storage TEXT, updated_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS runbooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL, kind TEXT NOT NULL,
        status TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER, data TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT, runbook_id INTEGER NOT NULL, step TEXT NOT NULL,
        phase TEXT NOT NULL, at INTEGER NOT NULL, data TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, site TEXT, host TEXT,
        kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS relays (
        host TEXT PRIMARY KEY, pgid INTEGER, power TEXT NOT NULL, updated_at INTEGER NOT NULL);
    `);
  }

  close(): void {
    this.db.close();
  }

  // ------------------------------------------------------------------ sites
  getSite(site: string): SiteRecord | undefined {
    const r = this.db.prepare('SELECT * FROM sites WHERE site = ?').get(site) as Record<string, unknown> | undefined;
    return r ? rowToSite(r) : undefined;
  }

  listSites(): SiteRecord[] {
    return (this.db.prepare('SELECT * FROM sites ORDER BY site').all() as Record<string, unknown>[]).map(rowToSite);
  }

  putSite(s: Omit<SiteRecord, 'updatedAt'>): void {
    this.db.prepare(`INSERT INTO sites (site, epoch, primary_host, state, replica_storage, updated_at)
      VALUES (@site, @epoch, @primaryHost, @state, @replicaStorage, @now)
      ON CONFLICT(site) DO UPDATE SET epoch = @epoch, primary_host = @primaryHost, state = @state,
        replica_storage = @replicaStorage, updated_at = @now`).run({ ...s, now: Date.now() });
  }

  setSiteState(site: string, state: SiteState): void {
    this.db.prepare('UPDATE sites SET state = ?, updated_at = ? WHERE site = ?').run(state, Date.now(), site);
  }

  // ------------------------------------------------------------------ runbooks and journal
  startRunbook(site: string, kind: string, data: Record<string, unknown>): RunbookRecord {
    const now = Date.now();
    const info = this.db.prepare(`INSERT INTO runbooks (site, kind, status, started_at, data) VALUES (?, ?, 'running', ?, ?)`)
      .run(site, kind, now, JSON.stringify(data));
    return { id: Number(info.lastInsertRowid), site, kind, status: 'running', startedAt: now, finishedAt: null, data };
  }

  updateRunbookData(id: number, data: Record<string, unknown>): void {
    this.db.prepare('UPDATE runbooks SET data = ? WHERE id = ?').run(JSON.stringify(data), id);
  }

  finishRunbook(id: number, status: RunbookRecord['status']): void {
    this.db.prepare('UPDATE runbooks SET status = ?, finished_at = ? WHERE id = ?').run(status, Date.now(), id);
  }

  runningRunbooks(): RunbookRecord[] {
    return (this.db.prepare(`SELECT * FROM runbooks WHERE status = 'running' ORDER BY id`).all() as Record<string, unknown>[]).map(rowToRunbook);
  }

  listRunbooks(site?: string): RunbookRecord[] {
    const rows = site
      ? this.db.prepare('SELECT * FROM runbooks WHERE site = ? ORDER BY id').all(site)
      : this.db.prepare('SELECT * FROM runbooks ORDER BY id').all();
    return (rows as Record<string, unknown>[]).map(rowToRunbook);
  }

  journal(runbookId: number, step: string, phase: JournalEntry['phase'], data: Record<string, unknown> = {}): void {
    this.db.prepare('INSERT INTO journal (runbook_id, step, phase, at, data) VALUES (?, ?, ?, ?, ?)')
      .run(runbookId, step, phase, Date.now(), JSON.stringify(data));
  }

  journalOf(runbookId: number): JournalEntry[] {
    return (this.db.prepare('SELECT * FROM journal WHERE runbook_id = ? ORDER BY id').all(runbookId) as Record<string, unknown>[]).map((r) => ({
      id: r.id as number, runbookId: r.runbook_id as number, step: r.step as string,
      phase: r.phase as JournalEntry['phase'], at: r.at as number, data: JSON.parse(r.data as string) as Record<string, unknown>,
    }));
  }

  // ------------------------------------------------------------------ events
  addEvent(e: Omit<EventRecord, 'id' | 'at'> & { at?: number }): EventRecord {
    const at = e.at ?? Date.now();
    const info = this.db.prepare('INSERT INTO events (at, site, host, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)')
      .run(at, e.site, e.host, e.kind, e.message, JSON.stringify(e.data));
    const rec: EventRecord = { id: Number(info.lastInsertRowid), at, site: e.site, host: e.host, kind: e.kind, message: e.message, data: e.data };
    for (const l of this.eventListeners) l(rec);
    return rec;
  }

  listEvents(opts: { afterId?: number; site?: string; limit?: number } = {}): EventRecord[] {
    const rows = this.db.prepare(`SELECT * FROM events WHERE id > ? AND (? IS NULL OR site = ?) ORDER BY id LIMIT ?`)
      .all(opts.afterId ?? 0, opts.site ?? null, opts.site ?? null, opts.limit ?? 1000) as Record<string, unknown>[];
    return rows.map((r) => ({
      id: r.id as number, at: r.at as number, site: (r.site as string | null) ?? null, host: (r.host as string | null) ?? null,
      kind: r.kind as string, message: r.message as string, data: JSON.parse(r.data as string) as Record<string, unknown>,
    }));
  }

  onEvent(listener: (e: EventRecord) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  // ------------------------------------------------------------------ relays
  getRelay(host: string): RelayRecord | undefined {
    const r = this.db.prepare('SELECT * FROM relays WHERE host = ?').get(host) as Record<string, unknown> | undefined;
    return r ? { host: r.host as string, pgid: (r.pgid as number | null) ?? null, power: r.power as 'on' | 'off', updatedAt: r.updated_at as number } : undefined;
  }

  listRelays(): RelayRecord[] {
    return (this.db.prepare('SELECT * FROM relays ORDER BY host').all() as Record<string, unknown>[]).map((r) => ({
      host: r.host as string, pgid: (r.pgid as number | null) ?? null, power: r.power as 'on' | 'off', updatedAt: r.updated_at as number,
    }));
  }

  forgetRelay(host: string): void {
    this.db.prepare('DELETE FROM relays WHERE host = ?').run(host);
  }

  putRelay(host: string, power: 'on' | 'off', pgid: number | null): void {
    this.db.prepare(`INSERT INTO relays (host, pgid, power, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT(host) DO UPDATE SET pgid = excluded.pgid, power = excluded.power, updated_at = excluded.updated_at`)
      .run(host, pgid, power, Date.now());
  }
}

function rowToSite(r: Record<string, unknown>): SiteRecord {
  return {
    site: r.site as string, epoch: r.epoch as number, primaryHost: r.primary_host as string,
    state: r.state as SiteState, replicaStorage: (r.replica_storage as string | null) ?? null, updatedAt: r.updated_at as number,
  };
}

function rowToRunbook(r: Record<string, unknown>): RunbookRecord {
  return {
    id: r.id as number, site: r.site as string, kind: r.kind as string, status: r.status as RunbookRecord['status'],
    startedAt: r.started_at as number, finishedAt: (r.finished_at as number | null) ?? null,
    data: JSON.parse(r.data as string) as Record<string, unknown>,
  };
}
