import type { UnderstudyConfig } from '../config/types.ts';
import type { RelayDriver } from '../power/relay.ts';
import type { VolumeStatus } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { SiteRecord, StateStore } from '../state/state-store.ts';
import type { ActionGovernor } from './action-governor.ts';
import { heldElsewhere } from './pool-facts.ts';

/** What the checks of an operator's request read. */
export interface RequestFacts {
  config: UnderstudyConfig;
  store: StateStore;
  governor: ActionGovernor;
  relay: RelayDriver;
  readers: () => { site: string; host: string }[];
  volume: (storage: string, site: string) => VolumeStatus | undefined;
}

/*
 * The checks of `failover --to`, `switchover` and `restore`, made before anything is
 * held, fenced or started: a wrong request must not take a healthy site down. Each
 * refusal has its code and says what to do instead.
 */

/** The site's record; US_NOT_FOUND, naming the configured sites, when there is none. */
export function knownSite(config: UnderstudyConfig, store: StateStore, site: string): SiteRecord {
  const rec = store.getSite(site);
  if (!rec || !config.sites[site]) throw new UnderstudyError('US_NOT_FOUND', `unknown site ${site}: the config has ${Object.keys(config.sites).join(', ')}`);
  return rec;
}

function knownHost(config: UnderstudyConfig, host: string) {
  const h = config.hosts[host];
  if (!h) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: the config has ${Object.keys(config.hosts).join(', ')}`);
  return h;
}

function oneOfItsHosts(config: UnderstudyConfig, site: string, host: string): void {
  const cfg = config.sites[site]!;
  if (![cfg.primary, ...cfg.standby].includes(host))
    throw new UnderstudyError(
      'US_TARGET_INVALID',
      `${host} is not one of ${site}'s hosts (primary ${cfg.primary}, standby ${cfg.standby.join(', ')}): name one of them with --to`,
    );
}

function pool(f: RequestFacts) {
  return { sites: f.store.listSites(), running: f.store.runningRunbooks(), readers: f.readers() };
}

/** `failover SITE --to HOST`: HOST is another of the site's hosts, attached to the replica's storage, free and trusted. */
export function checkFailoverTarget(f: RequestFacts, rec: SiteRecord, to: string): void {
  const site = rec.site;
  const host = knownHost(f.config, to);
  if (to === rec.primaryHost)
    throw new UnderstudyError('US_TARGET_INVALID', `${site} already runs on ${to}: name another of its hosts with --to, or leave --to out`);
  oneOfItsHosts(f.config, site, to);
  if (host.storage !== rec.replicaStorage)
    throw new UnderstudyError(
      'US_NO_TARGET',
      `${to} is attached to ${host.storage}, but ${site}'s replica is on ${rec.replicaStorage ?? 'no storage system (unprotected)'}`,
    );
  const held = heldElsewhere(f.config, pool(f), site, to, 'failover');
  if (held) throw new UnderstudyError('US_NO_TARGET', held);
  // Checked before the fence too: an untrusted target would be refused after it, leaving the site down.
  const trust = f.governor.trust(to);
  if (!trust.trusted)
    throw new UnderstudyError(
      'US_NO_TARGET',
      `${to} is not trusted yet (${trust.why}): wait until it is (understudy status shows hosts' trust), or choose another host`,
    );
}

/**
 * `switchover SITE --to HOST`: the site serves and streams to its replica; HOST is
 * another of its hosts, attached to the replica's storage, free and powered on.
 */
export function checkSwitchover(f: RequestFacts, rec: SiteRecord, to: string): void {
  const site = rec.site;
  const host = knownHost(f.config, to);
  if (rec.state !== 'serving')
    throw new UnderstudyError('US_SITE_NOT_SERVING', `${site} is ${rec.state}, not serving: a switchover needs a serving primary (use failover)`);
  if (rec.primaryHost === to) throw new UnderstudyError('US_TARGET_INVALID', `${site} already runs on ${to}: name another of its hosts with --to`);
  oneOfItsHosts(f.config, site, to);
  if (!rec.replicaStorage || host.storage !== rec.replicaStorage)
    throw new UnderstudyError(
      'US_NO_TARGET',
      `${to} is attached to ${host.storage}, but ${site}'s replica is on ${rec.replicaStorage ?? 'no storage system (unprotected)'}: choose a host attached to it`,
    );
  const held = heldElsewhere(f.config, pool(f), site, to, 'switchover');
  if (held) throw new UnderstudyError('US_NO_TARGET', held);
  const vol = f.volume(f.config.hosts[rec.primaryHost]!.storage, site);
  if (vol?.replication?.state !== 'streaming')
    throw new UnderstudyError(
      'US_NOT_REPLICATING',
      `${site}'s replication to ${rec.replicaStorage} is ${vol?.replication?.state ?? 'unknown'}, not streaming: wait until it streams (understudy status)`,
    );
  if (f.relay.status(to).power === 'off') throw new UnderstudyError('US_NO_TARGET', `${to} is powered off: power it on first (understudy power ${to} on)`);
}

/**
 * The host a restore installs the site on: `to`, else the first of the site's hosts
 * (not held by another site) attached to another, non-vault storage system than the
 * damaged copy's, powered on first; else the primary host itself.
 */
export function restoreTarget(f: RequestFacts, rec: SiteRecord, opts: { at?: number; to?: string }): string {
  const site = rec.site;
  const cfg = f.config.sites[site]!;
  if (opts.to) oneOfItsHosts(f.config, site, opts.to);
  if (opts.at !== undefined && !Number.isFinite(opts.at)) throw new UnderstudyError('US_BAD_REQUEST', '--at must be a time like 2026-11-25T06:00:00Z');
  const damaged = f.config.hosts[rec.primaryHost]!.storage;
  // A host another site holds (its primary, a runbook's target or a reader) is not restored onto (shared pools: spare-pool.ts).
  const state = pool(f);
  if (opts.to) {
    const held = heldElsewhere(f.config, state, site, opts.to, 'switchover');
    if (held) throw new UnderstudyError('US_NO_TARGET', held);
    return opts.to;
  }
  const hosts = [cfg.primary, ...cfg.standby].map((h) => f.config.hosts[h]!).filter((h) => !heldElsewhere(f.config, state, site, h.name, 'switchover'));
  const elsewhere = hosts.filter((h) => h.storage !== damaged && !f.config.storage[h.storage]!.backup);
  return elsewhere.find((h) => f.relay.status(h.name).power === 'on')?.name ?? elsewhere[0]?.name ?? rec.primaryHost;
}
