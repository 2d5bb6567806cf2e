import path from 'node:path';
import type { Finding } from './problems.ts';
import type { ParsedSections } from './parse-sections.ts';
import { endpointToString } from './types.ts';
import type { Endpoint, UnderstudyConfig } from './types.ts';
import { appTemplateProblems } from '../transform/render-app.ts';

/**
 * Checks that hold across sections: names that refer to something, addresses and
 * paths that must be distinct, and whether each site can actually fail over. Runs
 * on whatever compiled (entries with problems of their own are absent, and a
 * reference to them is not reported twice: `parsed` knows every name in the file).
 */
export function checkReferences(config: UnderstudyConfig, parsed: ParsedSections, findings: Finding[]): void {
  const names = {
    storage: parsed.storage.map((e) => e.name),
    hosts: parsed.hosts.map((e) => e.name),
    pools: parsed.pools.map((e) => e.name),
  };
  const known = (list: string[]): string => (list.length ? ` (known: ${list.join(', ')})` : '');

  // hosts → storage; one address per host
  const byAddress = new Map<string, string>();
  for (const h of Object.values(config.hosts)) {
    if (!names.storage.includes(h.storage)) {
      findings.push({ path: ['hosts', h.name, 'storage'], message: `unknown storage system ${h.storage}${known(names.storage)}` });
    }
    const other = byAddress.get(h.address);
    if (other !== undefined) {
      findings.push({ path: ['hosts', h.name, 'address'], message: `${h.address} is already the address of host ${other}; every host needs its own` });
    } else byAddress.set(h.address, h.name);
  }

  // Several controllers: whichever leads must be able to cut any host's power. A `local`
  // host's processes belong to the machine of the controller that started them (its
  // process group): another controller can neither fence nor start them.
  const controllers = Object.keys(config.controller.members);
  if (controllers.length > 1) {
    for (const h of Object.values(config.hosts)) {
      if (h.power !== 'local') continue;
      findings.push({
        path: ['hosts', h.name, 'power'],
        message: `local (the default) runs the host's processes from the leading controller's own machine; another controller (${controllers.join(', ')}) could neither fence nor start them: with several controllers every host needs a BMC (power: { ipmi: { address, user, passwordFile } })`,
      });
    }
  }

  // pools → hosts; a pool name must not shadow a host name
  for (const { name, value } of parsed.pools) {
    if (names.hosts.includes(name)) {
      findings.push({ path: ['pools', name], at: 'key', message: `a pool may not have the name of a host (standby: ${name} would be ambiguous)` });
    }
    const seen = new Set<string>();
    value?.forEach((h, i) => {
      if (!names.hosts.includes(h)) findings.push({ path: ['pools', name, i], message: `unknown host ${h}${known(names.hosts)}` });
      else if (seen.has(h)) findings.push({ path: ['pools', name, i], message: `${h} is listed twice` });
      seen.add(h);
    });
  }

  // storage paths must be distinct and not nested
  const storages = Object.values(config.storage);
  storages.forEach((s, i) => {
    for (const other of storages.slice(0, i)) {
      if (s.path === other.path) {
        findings.push({ path: ['storage', s.name, 'path'], message: `same path as storage ${other.name}; every storage system needs its own directory` });
      } else if (isInside(s.path, other.path) || isInside(other.path, s.path)) {
        findings.push({ path: ['storage', s.name, 'path'], message: `overlaps the path of storage ${other.name}; storage directories must not be nested` });
      }
    }
  });

  checkSites(config, names, findings);
  checkListeners(config, findings);
}

function checkSites(config: UnderstudyConfig, names: { storage: string[]; hosts: string[]; pools: string[] }, findings: Finding[]): void {
  for (const site of Object.values(config.sites)) {
    const base = ['sites', site.name];
    const primary = config.hosts[site.primary];
    if (!names.hosts.includes(site.primary)) {
      const hint = names.pools.includes(site.primary) ? ' (that is a pool; primary must name one host)' : ` (known: ${names.hosts.join(', ')})`;
      findings.push({ path: [...base, 'primary'], message: `unknown host ${site.primary}${hint}` });
    }
    const primaryStorage = primary ? config.storage[primary.storage] : undefined;
    if (primary && primaryStorage?.backup) {
      findings.push({
        path: [...base, 'primary'],
        message: `host ${primary.name} is attached to ${primaryStorage.name}, a backup storage system; a site's primary needs a volume storage system`,
      });
    }

    // Can any standby take over? It needs a replica, i.e. a storage system other
    // than the primary's that is not a backup vault.
    const standbyHosts = site.standby.map((h) => config.hosts[h]).filter((h) => h !== undefined);
    if (primary && primaryStorage && standbyHosts.length > 0 && standbyHosts.length === site.standby.length) {
      const usable = standbyHosts.filter((h) => h.storage !== primary.storage && config.storage[h.storage]?.backup !== true);
      if (usable.length === 0) {
        findings.push({
          path: [...base, 'standby'],
          message:
            `every standby host (${site.standby.join(', ')}) is attached to storage ${primary.storage}, like the primary ${primary.name}` +
            ' (or to a backup vault): no replica can be promoted; add a standby attached to another storage system',
        });
      }
    }

    // Two sites may share a host (pools are shared): their app ports must differ,
    // and no app may take a host agent's port.
    const candidates = [site.primary, ...site.standby];
    for (const h of candidates) {
      const host = config.hosts[h];
      if (host && host.agentPort === site.app.port) {
        findings.push({ path: [...base, 'app', 'port'], message: `${site.app.port} is the agent port of host ${h}, where this site may run` });
      }
    }
    for (const other of Object.values(config.sites)) {
      if (other === site) break; // report once, on the later site
      if (other.app.port !== site.app.port) continue;
      const shared = candidates.filter((h) => other.primary === h || other.standby.includes(h));
      if (shared.length > 0) {
        findings.push({
          path: [...base, 'app', 'port'],
          message: `site ${other.name} uses port ${site.app.port} too, and both may run on ${shared.join(', ')}; give each site its own app port`,
        });
      }
    }

    // app.command / app.env templates render on every host that may run the site.
    const runners = candidates.map((h) => config.hosts[h]).filter((h) => h !== undefined);
    for (const p of appTemplateProblems(runners, site)) findings.push({ path: [...base, 'app', ...p.path], message: p.message });

    const backup = site.volume.backup;
    if (backup) {
      const to = config.storage[backup.to];
      if (!names.storage.includes(backup.to)) {
        findings.push({ path: [...base, 'volume', 'backup', 'to'], message: `unknown storage system ${backup.to} (known: ${names.storage.join(', ')})` });
      } else if (to && !to.backup) {
        findings.push({ path: [...base, 'volume', 'backup', 'to'], message: `storage ${backup.to} is not a backup storage system (set backup: true on it)` });
      }
    }
  }
}

/** Every socket Understudy opens must be its own: fronts, controller, director, storage processors, host agents. */
function checkListeners(config: UnderstudyConfig, findings: Finding[]): void {
  const taken: { endpoint: Endpoint; owner: string }[] = [];
  const claim = (endpoint: Endpoint, owner: string, path: PropertyKey[]): void => {
    const clash = taken.find((t) => t.endpoint.port === endpoint.port && sameHost(t.endpoint.host, endpoint.host));
    if (clash) {
      findings.push({ path, message: `${endpointToString(endpoint)} is already used by ${clash.owner}` });
    } else taken.push({ endpoint, owner });
  };
  claim(config.controller.listen, 'controller.listen', ['controller', 'listen']);
  // A member may be the controller.listen address itself (the CLI's way to one of them).
  for (const [name, m] of Object.entries(config.controller.members))
    if (endpointToString(m) !== endpointToString(config.controller.listen)) claim(m, `controller.members.${name}`, ['controller', 'members', name]);
  claim(config.director.listen, 'director.listen', ['director', 'listen']);
  for (const [name, m] of Object.entries(config.director.members))
    if (endpointToString(m) !== endpointToString(config.director.listen)) claim(m, `director.members.${name}`, ['director', 'members', name]);
  for (const s of Object.values(config.storage)) claim(s.listen, `storage.${s.name}.listen`, ['storage', s.name, 'listen']);
  for (const h of Object.values(config.hosts)) {
    claim({ host: h.address, port: h.agentPort }, `the agent of host ${h.name}`, ['hosts', h.name, 'agentPort']);
  }
  for (const s of Object.values(config.sites)) claim(s.front, `sites.${s.name}.front`, ['sites', s.name, 'front']);
}

function sameHost(a: string, b: string): boolean {
  const any = (h: string): boolean => h === '0.0.0.0' || h === '::';
  return a === b || any(a) || any(b);
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}
