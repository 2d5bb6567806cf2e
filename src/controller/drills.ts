import type { Endpoint } from '../config/types.ts';
import type { VolumeStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { DrillRunbook, type DrillData, type DrillReport } from './drill-runbook.ts';
import { holdsFrom } from './pool-facts.ts';
import type { RunbookDeps } from './runbook-journal.ts';

export interface DrillsDeps extends RunbookDeps {
  /** The primary copy's status as the controller last polled it (replication state and lag). */
  volume: (storage: string, site: string) => VolumeStatus | undefined;
}

export interface DrillOptions {
  /** The spare to rehearse on (one of the site's hosts); else the one a failover would take, if free, else another free one. */
  to?: string;
  /** Where the drill front listens. @default the site's front host, any free port */
  front?: Endpoint;
  /** The smoke request's path. @default '/' */
  smokePath?: string;
}

/**
 * Runs rehearsals (drill-runbook.ts), one at a time, and decides whether one may run:
 * refused, with the reason, when the site is not serving, its replica does not stream,
 * any runbook is running, or no spare of the site is free (powered off, or powered and
 * running nothing; trusted; held by no site as primary, runbook target or reader).
 * A drill is not one of the site's runbooks as far as failover is concerned: it never
 * makes a failover wait, it gives way (`preempt`).
 */
export class Drills {
  private current: { site: string; runbook: DrillRunbook; done: Promise<DrillReport> } | null = null;

  constructor(private readonly deps: DrillsDeps) {}

  /** The site whose drill runs now, or null. */
  running(): string | null {
    return this.current?.site ?? null;
  }

  /** A runbook starts: the drill under way (if any) stops at its next step and tears down. */
  preempt(why: string): void {
    this.current?.runbook.preempt(why);
  }

  /** Drills a previous controller left running: only their teardown is run (and recorded). */
  resume(): void {
    for (const rb of this.deps.store.runningRunbooks().filter((r) => r.kind === 'drill')) {
      const runbook = new DrillRunbook(this.deps, rb);
      const done = runbook.rehearse(true).finally(() => {
        if (this.current?.runbook === runbook) this.current = null;
      });
      if (!this.current) this.current = { site: rb.site, runbook, done };
      done.catch((e: Error) => this.deps.log.error({ site: rb.site, err: e.message }, 'drill teardown after a restart failed'));
    }
  }

  async run(site: string, opts: DrillOptions = {}): Promise<DrillReport> {
    const { config, store } = this.deps;
    const cfg = config.sites[site];
    const rec = store.getSite(site);
    if (!cfg || !rec) throw new UnderstudyError('US_NOT_FOUND', `unknown site ${site}: the config has ${Object.keys(config.sites).join(', ')}`);
    const refuse = (why: string): never => {
      throw new UnderstudyError('US_DRILL_REFUSED', `drill of ${site} refused: ${why}`);
    };
    if (this.current) refuse(`a drill of ${this.current.site} is running; one drill at a time`);
    const running = store.runningRunbooks();
    if (running.length > 0)
      refuse(
        `${running.map((r) => `${r.kind} #${r.id} of ${r.site}`).join(', ')} ${running.length > 1 ? 'are' : 'is'} running; try again when it has finished (understudy events --follow)`,
      );
    if (rec.state !== 'serving') refuse(`${site} is ${rec.state}, not serving`);
    const primaryStorage = config.hosts[rec.primaryHost]!.storage;
    const rep = this.deps.volume(primaryStorage, site)?.replication;
    if (!rec.replicaStorage || rep?.state !== 'streaming')
      refuse(
        `${site}'s replica ${rec.replicaStorage ? `on ${rec.replicaStorage} is ${rep?.state ?? 'unknown'}` : 'does not exist (unprotected)'}, not streaming: there is nothing a failover could take over`,
      );
    if (opts.to !== undefined && !config.hosts[opts.to])
      throw new UnderstudyError('US_NOT_FOUND', `unknown host ${opts.to}: the config has ${Object.keys(config.hosts).join(', ')}`);
    if (opts.to !== undefined && ![cfg.primary, ...cfg.standby].includes(opts.to))
      refuse(`${opts.to} is not one of ${site}'s hosts (primary ${cfg.primary}, standby ${cfg.standby.join(', ')})`);
    const spare = await this.chooseSpare(site, rec.primaryHost, rec.replicaStorage!, opts.to);
    if ('why' in spare) refuse(spare.why);
    const host = (spare as { host: string }).host;
    // Checked again after the look at the spares (an await): nothing may have started meanwhile.
    if (this.current || store.runningRunbooks().length > 0) refuse('a runbook started meanwhile');
    const data: DrillData = {
      host,
      storage: config.hosts[host]!.storage,
      primary: rec.primaryHost,
      epoch: rec.epoch,
      replicaStorage: rec.replicaStorage!,
      front: opts.front ?? { host: cfg.front.host, port: 0 },
      smokePath: opts.smokePath ?? '/',
      startedAt: Date.now(),
    };
    const rb = store.startRunbook(site, 'drill', data);
    store.addEvent({
      site,
      host,
      kind: 'drill-started',
      message: `${site}: drill #${rb.id} started: a copy of the replica on ${data.replicaStorage} onto ${host} (${data.storage}); the site itself is not touched`,
      data: { runbook: rb.id, host, storage: data.storage },
    });
    const runbook = new DrillRunbook(this.deps, rb);
    const done = runbook.rehearse();
    this.current = { site, runbook, done };
    try {
      return await done;
    } finally {
      if (this.current?.runbook === runbook) this.current = null;
    }
  }

  /** The free spare to rehearse on, or why there is none. */
  private async chooseSpare(site: string, primary: string, replicaStorage: string, requested?: string): Promise<{ host: string } | { why: string }> {
    const { config, store, relay, clients, governor } = this.deps;
    const cfg = config.sites[site]!;
    const holds = holdsFrom(store.listSites(), store.runningRunbooks(), this.deps.readers?.() ?? []);
    const pool = requested !== undefined ? [requested] : cfg.standby;
    // The host a failover would take first (attached to the replica's storage) is the best rehearsal.
    const ordered = [...pool.filter((h) => config.hosts[h]?.storage === replicaStorage), ...pool.filter((h) => config.hosts[h]?.storage !== replicaStorage)];
    const busy: string[] = [];
    for (const h of ordered) {
      const hostCfg = config.hosts[h];
      if (!hostCfg || h === primary) {
        busy.push(`${h} (the primary)`);
        continue;
      }
      if (config.storage[hostCfg.storage]?.backup) {
        busy.push(`${h} (attached to the vault ${hostCfg.storage})`);
        continue;
      }
      const hold = holds.find((x) => x.host === h);
      if (hold) {
        busy.push(`${h} (${hold.as === 'primary' ? 'the primary of' : hold.as === 'target' ? 'the target of a runbook of' : 'a reader of'} ${hold.site})`);
        continue;
      }
      const trust = governor?.trust(h);
      if (trust && !trust.trusted) {
        busy.push(`${h} (not trusted: ${trust.why})`);
        continue;
      }
      if (relay.status(h).power === 'on') {
        const st = await clients.agentStatus(h, 500).catch(() => null);
        if (!st) {
          busy.push(`${h} (powered, but its agent does not answer)`);
          continue;
        }
        const apps = st.sites.filter((s) => s.state === 'running' || s.state === 'starting').map((s) => s.site);
        if (apps.length > 0) {
          busy.push(`${h} (runs ${apps.join(', ')})`);
          continue;
        }
      }
      return { host: h };
    }
    return { why: `no spare of ${site} is free: ${busy.join(', ') || 'the site has no standby host'}` };
  }
}
