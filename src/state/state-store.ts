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

/** A runbook as `GET /v1/runbooks` answers it: the record and its journal. */
export type RunbookView = RunbookRecord & { journal: JournalEntry[] };

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

/** An event to record: the store gives it its id and, unless given, its time. */
export type NewEvent = Omit<EventRecord, 'id' | 'at'> & { at?: number };

export interface RelayRecord {
  host: string;
  pgid: number | null;
  /**
   * What proves that `pgid` is still the group the relay started, and not a later
   * one that reused the number (local relay: the leader's boot and start time).
   * Null in records written before it was kept.
   */
  identity: string | null;
  power: 'on' | 'off';
  updatedAt: number;
}

/**
 * The tables a mirror (etcd-state.ts) keeps elsewhere, with the column that names a row.
 * Numeric keys are written zero-padded, so that the mirror's key order is the row order.
 */
const MIRRORED: Record<string, { key: string; numeric: boolean }> = {
  sites: { key: 'site', numeric: false },
  runbooks: { key: 'id', numeric: true },
  journal: { key: 'id', numeric: true },
  events: { key: 'id', numeric: true },
  relays: { key: 'host', numeric: false },
  notify_cursor: { key: 'target', numeric: false },
  notify_queue: { key: 'id', numeric: true },
  memory: { key: 'name', numeric: false },
};

/** One change to a mirrored table, in the order it was made: the row as it is now, or null when it was deleted. */
export interface StoreChange {
  seq: number;
  table: string;
  key: string;
  row: Record<string, unknown> | null;
}

/** Where the store keeps its rows: a directory (the embedded SQLite file), or memory with every change queued for a mirror. */
export type StoreLocation = string | { mirrored: true };

export class StateStore {
  private readonly db: Database.Database;
  /** Set for a mirrored store: told (once per tick) that changes wait in the outbox. */
  private changeListener: (() => void) | null = null;
  private changeScheduled = false;
  /** Set for a mirrored store: what `flush()` awaits (etcd-state.ts). */
  private flusher: (() => Promise<void>) | null = null;
  /** Prepared statements by SQL text: compiling one costs more than running it. */
  private readonly statements = new Map<string, Database.Statement>();
  private rev = 0;
  private siteCache: Map<string, SiteRecord> | null = null;
  /** The cached records in site order, until the next change. */
  private siteList: SiteRecord[] | null = null;
  private readonly eventListeners = new Set<(e: EventRecord) => void>();
  private readonly journalListeners = new Set<(j: JournalEntry, rb: { site: string; kind: string }) => void>();
  private readonly closeListeners = new Set<() => void>();

  /**
   * @param location the state directory (embedded: SQLite in WAL mode, every write durable
   *   when it returns), or `{ mirrored: true }`: the rows in memory, every change queued in
   *   an outbox, in order, for a mirror to make durable (etcd-state.ts); then `flush()`
   *   is what makes writes durable.
   */
  constructor(location: StoreLocation) {
    if (typeof location === 'string') {
      fs.mkdirSync(location, { recursive: true });
      this.db = new Database(path.join(location, 'understudy.db'));
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
    } else {
      this.db = new Database(':memory:');
    }
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
      CREATE TABLE IF NOT EXISTS notify_cursor (target TEXT PRIMARY KEY, last_event_id INTEGER NOT NULL);
      -- What a part of the controller remembers between decisions (the governor's host trust and cooldowns), as JSON by name.
      CREATE TABLE IF NOT EXISTS memory (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS notify_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, event_id INTEGER NOT NULL,
        state TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
        delivered_at INTEGER, last_error TEXT, UNIQUE (target, event_id));
      CREATE INDEX IF NOT EXISTS notify_queue_due ON notify_queue (target, state, id);
      -- Asked per site on every status call (a site's last failover), per runbook, and for the running runbooks.
      CREATE INDEX IF NOT EXISTS events_by_kind_site ON events (kind, site, id);
      CREATE INDEX IF NOT EXISTS journal_by_runbook ON journal (runbook_id, id);
      CREATE INDEX IF NOT EXISTS runbooks_by_status ON runbooks (status, id);
    `);
    // Added later: a state dir written by an older version gets the column, empty.
    const relayColumns = (this.db.prepare('PRAGMA table_info(relays)').all() as { name: string }[]).map((c) => c.name);
    if (!relayColumns.includes('identity')) this.db.exec('ALTER TABLE relays ADD COLUMN identity TEXT');
    if (typeof location !== 'string') this.createOutbox();
  }

  /**
   * The outbox of a mirrored store: a trigger on every mirrored table writes each
   * change (the row as JSON, or null for a delete) in the same transaction as the
   * change itself, so the outbox holds every change exactly once, in commit order,
   * whichever method made it.
   */
  private createOutbox(): void {
    this.db.exec('CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, k TEXT NOT NULL, row TEXT)');
    this.db.function('us_changed', () => {
      this.changed();
      return null;
    });
    for (const [table, { key, numeric }] of Object.entries(MIRRORED)) {
      const columns = (this.db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
      const k = (ref: string) => (numeric ? `printf('%012d', ${ref}.${key})` : `${ref}.${key}`);
      const row = `json_object(${columns.map((c) => `'${c}', NEW.${c}`).join(', ')})`;
      this.db.exec(`
        CREATE TRIGGER ${table}_ins AFTER INSERT ON ${table} BEGIN
          INSERT INTO outbox (tbl, k, row) VALUES ('${table}', ${k('NEW')}, ${row}); SELECT us_changed(); END;
        CREATE TRIGGER ${table}_upd AFTER UPDATE ON ${table} BEGIN
          INSERT INTO outbox (tbl, k, row) VALUES ('${table}', ${k('NEW')}, ${row}); SELECT us_changed(); END;
        CREATE TRIGGER ${table}_del AFTER DELETE ON ${table} BEGIN
          INSERT INTO outbox (tbl, k, row) VALUES ('${table}', ${k('OLD')}, NULL); SELECT us_changed(); END;`);
    }
  }

  private changed(): void {
    if (this.changeScheduled || this.changeListener === null) return;
    this.changeScheduled = true;
    // After the writing transaction and whatever else this tick writes: one batch, not one per row.
    setImmediate(() => {
      this.changeScheduled = false;
      this.changeListener?.();
    });
  }

  /** True for a store whose changes go to a mirror (`{ mirrored: true }`). */
  get mirrored(): boolean {
    return this.db.memory;
  }

  /**
   * A mirrored store's mirror: `onChange` hears (once per tick) that changes wait;
   * `flush` is what `flush()` awaits.
   */
  attachMirror(m: { onChange: () => void; flush: () => Promise<void> } | null): void {
    this.changeListener = m?.onChange ?? null;
    this.flusher = m?.flush ?? null;
  }

  /**
   * Resolves once every change made before the call is durable: at once for the embedded
   * store (each write was), after the mirror has it for a mirrored one. Runbooks await it
   * after journaling a step's begin and before the step acts (journal before act). Throws
   * when the mirror refuses (this controller no longer leads) or cannot be reached.
   */
  flush(): Promise<void> {
    return this.flusher ? this.flusher() : Promise.resolve();
  }

  /** The oldest `limit` changes not yet taken by the mirror, in order. */
  pendingChanges(limit: number): StoreChange[] {
    return (this.q('SELECT seq, tbl, k, row FROM outbox ORDER BY seq LIMIT ?').all(limit) as { seq: number; tbl: string; k: string; row: string | null }[]).map(
      (r) => ({ seq: r.seq, table: r.tbl, key: r.k, row: r.row === null ? null : (JSON.parse(r.row) as Record<string, unknown>) }),
    );
  }

  /** The sequence number of the newest change (0: none yet). */
  lastChangeSeq(): number {
    return (this.q(`SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`).get() as { seq: number } | undefined)?.seq ?? 0;
  }

  /** The mirror has every change up to `seq`: they leave the outbox. */
  changesTaken(seq: number): void {
    this.q('DELETE FROM outbox WHERE seq <= ?').run(seq);
  }

  /**
   * Applies changes read from the mirror (a follower's view following etcd's watch):
   * a row written, or one deleted (`row` null, named by its key). Nothing is queued back.
   */
  applyMirrored(changes: { table: string; key: string; row: Record<string, unknown> | null }[]): void {
    const lastEvent = this.lastEventId();
    this.db.transaction(() => {
      for (const { table, key, row } of changes) {
        const m = MIRRORED[table];
        if (!m) continue;
        if (row === null) this.q(`DELETE FROM ${table} WHERE ${m.key} = ?`).run(m.numeric ? Number(key) : key);
        else this.writeRow(table, row);
      }
      this.q('DELETE FROM outbox').run();
    })();
    this.reloaded();
    // Live views (the event stream) hear what the leader recorded, as on the leader.
    for (const { table, row } of changes) {
      if (row === null) continue;
      if (table === 'events' && (row.id as number) > lastEvent) {
        const e = rowToEvent(row);
        for (const l of this.eventListeners) l(e);
      } else if (table === 'journal' && this.journalListeners.size > 0) {
        const rb = this.q('SELECT site, kind FROM runbooks WHERE id = ?').get(row.runbook_id) as { site: string; kind: string } | undefined;
        const j = rowToJournal(row);
        for (const l of this.journalListeners) l(j, rb ?? { site: '', kind: '' });
      }
    }
  }

  /**
   * Replaces every row of a mirrored store with `rows` (what the mirror holds): the view a
   * new leader starts from, or a follower's refresh. Nothing of it is queued back.
   */
  replaceAll(rows: { table: string; row: Record<string, unknown> }[]): void {
    const lastEvent = this.lastEventId();
    this.db.transaction(() => {
      for (const table of Object.keys(MIRRORED)) this.q(`DELETE FROM ${table}`).run();
      for (const { table, row } of rows) if (table in MIRRORED) this.writeRow(table, row);
      this.q('DELETE FROM outbox').run();
    })();
    this.reloaded();
    // A view read again (not the first read): live views hear the events it did not have.
    if (lastEvent > 0 && this.eventListeners.size > 0)
      for (const e of this.listEvents({ afterId: lastEvent, limit: 5000 })) for (const l of this.eventListeners) l(e);
  }

  /** Writes a row as the mirror holds it (its columns by name; statements cached by `q`). */
  private writeRow(table: string, row: Record<string, unknown>): void {
    const cols = Object.keys(row).sort();
    this.q(`INSERT OR REPLACE INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`).run(row);
  }

  /** After rows came from the mirror: what was read from them before is read again. */
  private reloaded(): void {
    this.rev++;
    this.siteCache = null;
    this.siteList = null;
  }

  /**
   * Grows at every change of a site record or a runbook: what a caller computed from
   * them (placement facts) stays good while it is the same.
   */
  get revision(): number {
    return this.rev;
  }

  private q(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (st === undefined) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  close(): void {
    if (!this.db.open) return;
    this.db.close();
    for (const l of this.closeListeners) l();
    this.closeListeners.clear();
  }

  /** Called once when the store closes (a term's view ends): a live view (the event stream) ends with it. */
  onClose(listener: () => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  // ------------------------------------------------------------------ sites
  /**
   * The site records, read from the database once and then kept: this store is their
   * only writer (putSite, setSiteState), and they are read per site many times a
   * second (detectors, reconcile, status). Callers get copies.
   */
  private sites(): Map<string, SiteRecord> {
    if (this.siteCache === null) {
      const rows = this.q('SELECT * FROM sites ORDER BY site').all() as Record<string, unknown>[];
      this.siteCache = new Map(rows.map((r) => [r.site as string, rowToSite(r)]));
    }
    return this.siteCache;
  }

  getSite(site: string): SiteRecord | undefined {
    const r = this.sites().get(site);
    return r ? { ...r } : undefined;
  }

  listSites(): SiteRecord[] {
    this.siteList ??= [...this.sites().values()].sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0));
    return this.siteList.map((r) => ({ ...r }));
  }

  putSite(s: Omit<SiteRecord, 'updatedAt'>): void {
    this.rev++;
    const rec: SiteRecord = {
      site: s.site,
      epoch: s.epoch,
      primaryHost: s.primaryHost,
      state: s.state,
      replicaStorage: s.replicaStorage ?? null,
      updatedAt: Date.now(),
    };
    const sites = this.sites();
    this.q(
      `INSERT INTO sites (site, epoch, primary_host, state, replica_storage, updated_at)
      VALUES (@site, @epoch, @primaryHost, @state, @replicaStorage, @updatedAt)
      ON CONFLICT(site) DO UPDATE SET epoch = @epoch, primary_host = @primaryHost, state = @state,
        replica_storage = @replicaStorage, updated_at = @updatedAt`,
    ).run(rec);
    sites.set(rec.site, rec);
    this.siteList = null;
  }

  setSiteState(site: string, state: SiteState): void {
    this.rev++;
    const now = Date.now();
    const sites = this.sites();
    this.q('UPDATE sites SET state = ?, updated_at = ? WHERE site = ?').run(state, now, site);
    const r = sites.get(site);
    if (r) sites.set(site, { ...r, state, updatedAt: now });
    this.siteList = null;
  }

  // ------------------------------------------------------------------ runbooks and journal
  startRunbook(site: string, kind: string, data: Record<string, unknown>): RunbookRecord {
    this.rev++;
    const now = Date.now();
    const info = this.q(`INSERT INTO runbooks (site, kind, status, started_at, data) VALUES (?, ?, 'running', ?, ?)`).run(
      site,
      kind,
      now,
      JSON.stringify(data),
    );
    return { id: Number(info.lastInsertRowid), site, kind, status: 'running', startedAt: now, finishedAt: null, data };
  }

  updateRunbookData(id: number, data: Record<string, unknown>): void {
    this.rev++;
    this.q('UPDATE runbooks SET data = ? WHERE id = ?').run(JSON.stringify(data), id);
  }

  finishRunbook(id: number, status: RunbookRecord['status']): void {
    this.rev++;
    this.q('UPDATE runbooks SET status = ?, finished_at = ? WHERE id = ?').run(status, Date.now(), id);
  }

  runningRunbooks(): RunbookRecord[] {
    return (this.q(`SELECT * FROM runbooks WHERE status = 'running' ORDER BY id`).all() as Record<string, unknown>[]).map(rowToRunbook);
  }

  listRunbooks(site?: string): RunbookRecord[] {
    const rows = site ? this.q('SELECT * FROM runbooks WHERE site = ? ORDER BY id').all(site) : this.q('SELECT * FROM runbooks ORDER BY id').all();
    return (rows as Record<string, unknown>[]).map(rowToRunbook);
  }

  journal(runbookId: number, step: string, phase: JournalEntry['phase'], data: Record<string, unknown> = {}): void {
    const at = Date.now();
    const info = this.q('INSERT INTO journal (runbook_id, step, phase, at, data) VALUES (?, ?, ?, ?, ?)').run(runbookId, step, phase, at, JSON.stringify(data));
    if (this.journalListeners.size === 0) return;
    const rb = this.q('SELECT site, kind FROM runbooks WHERE id = ?').get(runbookId) as { site: string; kind: string } | undefined;
    const entry: JournalEntry = { id: Number(info.lastInsertRowid), runbookId, step, phase, at, data };
    for (const l of this.journalListeners) l(entry, rb ?? { site: '', kind: '' });
  }

  /** Every journal entry written from now on, with its runbook's site and kind (live views: the events stream, /metrics). */
  onJournal(listener: (j: JournalEntry, rb: { site: string; kind: string }) => void): () => void {
    this.journalListeners.add(listener);
    return () => this.journalListeners.delete(listener);
  }

  journalOf(runbookId: number): JournalEntry[] {
    return (this.q('SELECT * FROM journal WHERE runbook_id = ? ORDER BY id').all(runbookId) as Record<string, unknown>[]).map(rowToJournal);
  }

  // ------------------------------------------------------------------ events
  addEvent(e: NewEvent): EventRecord {
    const rec = this.insertEvent(e);
    for (const l of this.eventListeners) l(rec);
    return rec;
  }

  /**
   * Several events in one transaction: one commit (one flush of the state file) for all,
   * where one change concerns many sites at once (a spare taken from a thousand sites'
   * pool). Listeners hear of them once they are committed, in order.
   */
  addEvents(list: readonly NewEvent[]): EventRecord[] {
    if (list.length === 0) return [];
    const recs = this.db.transaction(() => list.map((e) => this.insertEvent(e)))();
    for (const rec of recs) for (const l of this.eventListeners) l(rec);
    return recs;
  }

  private insertEvent(e: NewEvent): EventRecord {
    const at = e.at ?? Date.now();
    const info = this.q('INSERT INTO events (at, site, host, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)').run(
      at,
      e.site,
      e.host,
      e.kind,
      e.message,
      JSON.stringify(e.data),
    );
    return { id: Number(info.lastInsertRowid), at, site: e.site, host: e.host, kind: e.kind, message: e.message, data: e.data };
  }

  listEvents(opts: { afterId?: number; site?: string; limit?: number } = {}): EventRecord[] {
    const rows = this.q(`SELECT * FROM events WHERE id > ? AND (? IS NULL OR site = ?) ORDER BY id LIMIT ?`).all(
      opts.afterId ?? 0,
      opts.site ?? null,
      opts.site ?? null,
      opts.limit ?? 1000,
    ) as Record<string, unknown>[];
    return rows.map(rowToEvent);
  }

  /**
   * Forgets the oldest events beyond the newest `keep`, at most `max` of them a call
   * (a mirrored store sends each deletion to etcd: a small batch a time keeps a runbook's
   * flush from waiting behind a long purge). Kept whatever their age: the newest event of
   * each kind and site (what the status and the dashboard show: a site's last failover),
   * and any event a notification still waits to deliver. Returns how many went.
   */
  pruneEvents(keep: number, max = 500): number {
    const last = this.lastEventId();
    if (last <= keep) return 0;
    return this.q(
      `DELETE FROM events WHERE id IN (
        SELECT e.id FROM events e
        WHERE e.id <= ?
          AND e.id NOT IN (SELECT event_id FROM notify_queue WHERE state = 'pending')
          AND e.id < (SELECT MAX(x.id) FROM events x WHERE x.kind = e.kind AND x.site IS e.site)
        ORDER BY e.id LIMIT ?)`,
    ).run(last - keep, max).changes;
  }

  /** The newest event of `kind` for `site`, or undefined. */
  latestEvent(kind: string, site: string): EventRecord | undefined {
    const r = this.q('SELECT * FROM events WHERE kind = ? AND site = ? ORDER BY id DESC LIMIT 1').get(kind, site) as Record<string, unknown> | undefined;
    return r ? rowToEvent(r) : undefined;
  }

  /** The id of the newest event (0 when there is none). */
  lastEventId(): number {
    return (this.q('SELECT MAX(id) AS id FROM events').get() as { id: number | null }).id ?? 0;
  }

  onEvent(listener: (e: EventRecord) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  // ------------------------------------------------------------------ memory
  /** What was kept under `name` (JSON), or undefined. */
  getMemory<T>(name: string): T | undefined {
    const r = this.q('SELECT value FROM memory WHERE name = ?').get(name) as { value: string } | undefined;
    return r ? (JSON.parse(r.value) as T) : undefined;
  }

  putMemory(name: string, value: unknown): void {
    this.q(
      `INSERT INTO memory (name, value, updated_at) VALUES (?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    ).run(name, JSON.stringify(value), Date.now());
  }

  // ------------------------------------------------------------------ relays
  getRelay(host: string): RelayRecord | undefined {
    const r = this.q('SELECT * FROM relays WHERE host = ?').get(host) as Record<string, unknown> | undefined;
    return r ? rowToRelay(r) : undefined;
  }

  listRelays(): RelayRecord[] {
    return (this.q('SELECT * FROM relays ORDER BY host').all() as Record<string, unknown>[]).map(rowToRelay);
  }

  forgetRelay(host: string): void {
    this.q('DELETE FROM relays WHERE host = ?').run(host);
  }

  putRelay(host: string, power: 'on' | 'off', pgid: number | null, identity: string | null = null): void {
    this.q(
      `INSERT INTO relays (host, pgid, identity, power, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(host) DO UPDATE SET pgid = excluded.pgid, identity = excluded.identity, power = excluded.power, updated_at = excluded.updated_at`,
    ).run(host, pgid, identity, power, Date.now());
  }

  // ------------------------------------------------------------------ notification queue
  // The durable queue of notifications (src/notify/): per target, a cursor over the event
  // log and one row per event to deliver. Rows are written in one transaction with the
  // cursor, so an event is queued exactly once per target even across a controller crash,
  // and a row stays `pending` until its delivery is confirmed (at least once).

  /** The id of the last event considered for `target`, or undefined for a target never seen. */
  notifyCursor(target: string): number | undefined {
    const r = this.q('SELECT last_event_id FROM notify_cursor WHERE target = ?').get(target) as { last_event_id: number } | undefined;
    return r?.last_event_id;
  }

  /** Queues `eventIds` for `target` (each at most once) and moves its cursor to `cursor`, atomically. */
  enqueueNotifications(target: string, eventIds: number[], cursor: number): void {
    const now = Date.now();
    const insert = this.q(`INSERT OR IGNORE INTO notify_queue (target, event_id, state, attempts, next_at, created_at)
      VALUES (?, ?, 'pending', 0, ?, ?)`);
    this.db.transaction(() => {
      for (const id of eventIds) insert.run(target, id, now, now);
      this.q(
        `INSERT INTO notify_cursor (target, last_event_id) VALUES (?, ?)
        ON CONFLICT(target) DO UPDATE SET last_event_id = excluded.last_event_id`,
      ).run(target, cursor);
    })();
  }

  /** The oldest pending notification of `target` with its event, or undefined. */
  nextNotification(target: string): { row: NotificationRow; event: EventRecord } | undefined {
    const r = this.q(
      `SELECT q.*, e.at AS e_at, e.site AS e_site, e.host AS e_host, e.kind AS e_kind, e.message AS e_message, e.data AS e_data
      FROM notify_queue q JOIN events e ON e.id = q.event_id
      WHERE q.target = ? AND q.state = 'pending' ORDER BY q.id LIMIT 1`,
    ).get(target) as Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      row: rowToNotification(r),
      event: rowToEvent({ id: r.event_id, at: r.e_at, site: r.e_site, host: r.e_host, kind: r.e_kind, message: r.e_message, data: r.e_data }),
    };
  }

  /** Records one delivery attempt: delivered, or failed (to be tried again at `nextAt`, or given up). */
  notificationAttempt(id: number, outcome: { delivered: true } | { delivered: false; nextAt: number; error: string; giveUp: boolean }): void {
    if (outcome.delivered) {
      this.q(`UPDATE notify_queue SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL WHERE id = ?`).run(Date.now(), id);
    } else {
      this.q(`UPDATE notify_queue SET state = ?, attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?`).run(
        outcome.giveUp ? 'given-up' : 'pending',
        outcome.nextAt,
        outcome.error,
        id,
      );
    }
  }

  /** Per target: notifications waiting, delivered and given up (what the queue holds now). */
  notificationCounts(): { target: string; pending: number; delivered: number; givenUp: number }[] {
    return (
      this.q(
        `SELECT target,
        SUM(state = 'pending') AS pending, SUM(state = 'delivered') AS delivered, SUM(state = 'given-up') AS given_up
      FROM notify_queue GROUP BY target ORDER BY target`,
      ).all() as Record<string, number | string>[]
    ).map((r) => ({ target: r.target as string, pending: Number(r.pending), delivered: Number(r.delivered), givenUp: Number(r.given_up) }));
  }

  /** Forgets delivered and given-up rows older than `beforeMs` (the event log keeps the events). */
  pruneNotifications(beforeMs: number): void {
    this.q(`DELETE FROM notify_queue WHERE state != 'pending' AND created_at < ?`).run(beforeMs);
  }
}

export interface NotificationRow {
  id: number;
  target: string;
  eventId: number;
  state: 'pending' | 'delivered' | 'given-up';
  attempts: number;
  nextAt: number;
  createdAt: number;
  lastError: string | null;
}

function rowToNotification(r: Record<string, unknown>): NotificationRow {
  return {
    id: r.id as number,
    target: r.target as string,
    eventId: r.event_id as number,
    state: r.state as NotificationRow['state'],
    attempts: r.attempts as number,
    nextAt: r.next_at as number,
    createdAt: r.created_at as number,
    lastError: (r.last_error as string | null) ?? null,
  };
}

function rowToJournal(r: Record<string, unknown>): JournalEntry {
  return {
    id: r.id as number,
    runbookId: r.runbook_id as number,
    step: r.step as string,
    phase: r.phase as JournalEntry['phase'],
    at: r.at as number,
    data: JSON.parse(r.data as string) as Record<string, unknown>,
  };
}

function rowToEvent(r: Record<string, unknown>): EventRecord {
  return {
    id: r.id as number,
    at: r.at as number,
    site: (r.site as string | null) ?? null,
    host: (r.host as string | null) ?? null,
    kind: r.kind as string,
    message: r.message as string,
    data: JSON.parse(r.data as string) as Record<string, unknown>,
  };
}

function rowToSite(r: Record<string, unknown>): SiteRecord {
  return {
    site: r.site as string,
    epoch: r.epoch as number,
    primaryHost: r.primary_host as string,
    state: r.state as SiteState,
    replicaStorage: (r.replica_storage as string | null) ?? null,
    updatedAt: r.updated_at as number,
  };
}

function rowToRunbook(r: Record<string, unknown>): RunbookRecord {
  return {
    id: r.id as number,
    site: r.site as string,
    kind: r.kind as string,
    status: r.status as RunbookRecord['status'],
    startedAt: r.started_at as number,
    finishedAt: (r.finished_at as number | null) ?? null,
    data: JSON.parse(r.data as string) as Record<string, unknown>,
  };
}

function rowToRelay(r: Record<string, unknown>): RelayRecord {
  return {
    host: r.host as string,
    pgid: (r.pgid as number | null) ?? null,
    identity: (r.identity as string | null | undefined) ?? null,
    power: r.power as 'on' | 'off',
    updatedAt: r.updated_at as number,
  };
}
