import path from 'node:path';
import { isLoopbackAddress } from './endpoint.ts';
import type { Finding } from './problems.ts';
import type { ParsedSections } from './parse-sections.ts';
import { sectionSchemas, type SiteInput } from './schema.ts';
import type { HostConfig, NotifyTarget, SecretRef, SiteConfig, SyncConfig, StorageConfig, TransformRule, UnderstudyConfig } from './types.ts';

/**
 * Validated input → the compiled form of types.ts: relative paths made absolute
 * against `baseDir`, storage listen ports and host `boot` defaulted, standby pools
 * expanded into host lists. Problems found on the way (a standby naming nothing,
 * a primary in its own standby list) are pushed to `findings`; entries that were
 * invalid are left out, so the result is only trustworthy when `findings` is empty.
 */
export function compileConfig(parsed: ParsedSections, where: { file: string; baseDir: string }, findings: Finding[]): UnderstudyConfig {
  const abs = (p: string): string => path.resolve(where.baseDir, p);

  const storage: Record<string, StorageConfig> = {};
  for (const { name, index, value } of parsed.storage) {
    if (!value) continue;
    storage[name] = {
      name,
      path: abs(value.path),
      listen: value.listen ?? { host: '127.0.0.1', port: 7100 + index },
      backup: value.backup,
    };
  }

  const hosts: Record<string, HostConfig> = {};
  for (const { name, value } of parsed.hosts) {
    if (!value) continue;
    hosts[name] = {
      name,
      address: value.address,
      storage: value.storage,
      power:
        value.power === 'local'
          ? 'local'
          : {
              ipmi: {
                address: value.power.ipmi.address,
                port: value.power.ipmi.port,
                user: value.power.ipmi.user,
                passwordFile: abs(value.power.ipmi.passwordFile),
                cipherSuite: value.power.ipmi.cipherSuite,
                waitMs: value.power.ipmi.wait,
                pollMs: value.power.ipmi.poll,
                timeoutMs: value.power.ipmi.timeout,
              },
            },
      profile: { ...value.profile },
      agentPort: value.agentPort,
      boot: value.boot ?? false, // settled below, once the sites are known
    };
  }

  const pools: Record<string, string[]> = {};
  for (const { name, value } of parsed.pools) if (value) pools[name] = [...value];
  const hostNames = new Set(parsed.hosts.map((h) => h.name));
  const poolNames = new Set(parsed.pools.map((p) => p.name));

  const sites: Record<string, SiteConfig> = {};
  for (const { name, value } of parsed.sites) {
    if (!value) continue;
    const standby = expandStandby(name, value, pools, hostNames, poolNames, findings);
    sites[name] = {
      name,
      front: value.front,
      app: {
        command: [...value.app.command],
        port: value.app.port,
        ...(value.app.seed !== undefined ? { seed: abs(value.app.seed) } : {}),
        env: { ...value.app.env },
        startTimeoutMs: value.app.startTimeout,
      },
      primary: value.primary,
      standby: standby.hosts,
      ...(standby.pool !== undefined ? { standbyPool: standby.pool } : {}),
      priority: value.priority,
      volume: {
        replication: value.volume.replication,
        readonly: [...value.volume.readonly],
        ...(value.volume.backup ? { backup: { to: value.volume.backup.to, everyMs: value.volume.backup.every, keep: value.volume.backup.keep } } : {}),
        ...compileSync(value.volume.replication, value.volume.sync),
      },
      transform: value.transform.map(compileRule),
      health: {
        probe: {
          type: value.health.probe.type,
          path: value.health.probe.type === 'tcp' ? '' : (value.health.probe.path ?? '/healthz'),
          ...(value.health.probe.expect
            ? { expect: { ...value.health.probe.expect, ...(value.health.probe.expect.status ? { status: [...value.health.probe.expect.status] } : {}) } }
            : {}),
          everyMs: value.health.probe.every,
          timeoutMs: value.health.probe.timeout,
          fall: value.health.probe.fall,
          rise: value.health.probe.rise,
        },
        malfunction: { errorRate: value.health.malfunction.errorRate, windowMs: value.health.malfunction.window },
        performance: { p95Ms: value.health.performance.p95, windowMs: value.health.performance.window },
      },
      scale: {
        max: value.scale.max,
        cooldownMs: value.scale.cooldown,
        stabilizationMs: value.scale.stabilization,
        ...(value.scale.readPaths ? { readPaths: [...value.scale.readPaths] } : {}),
      },
    };
  }

  // boot: a host given no `boot` is powered on by `up` when it is a site's primary
  // or the first standby of a site (its warm standby).
  const warm = new Set<string>();
  for (const s of Object.values(sites)) {
    warm.add(s.primary);
    if (s.standby[0] !== undefined) warm.add(s.standby[0]);
  }
  for (const { name, value } of parsed.hosts) {
    const h = hosts[name];
    if (h && value && value.boot === undefined) h.boot = warm.has(name);
  }

  const notify: Record<string, NotifyTarget> = {};
  for (const { name, value } of parsed.notify) {
    if (!value) continue;
    value.sites?.forEach((s, i) => {
      if (!parsed.sites.some((e) => e.name === s))
        findings.push({
          path: ['notify', name, 'sites', i],
          message: `unknown site ${s}${parsed.sites.length ? ` (known: ${parsed.sites.map((e) => e.name).join(', ')})` : ''}`,
        });
    });
    notify[name] = {
      name,
      ...(value.webhook
        ? {
            webhook: {
              url: value.webhook.url,
              headers: Object.fromEntries(
                Object.entries(value.webhook.headers).map(([h, v]) => [h, 'file' in v && v.file !== undefined ? { file: abs(v.file) } : v]),
              ),
              timeoutMs: value.webhook.timeout,
            },
          }
        : {}),
      ...(value.command ? { command: { run: [...value.command.run], timeoutMs: value.command.timeout } } : {}),
      events: [...value.events],
      ...(value.sites ? { sites: [...value.sites] } : {}),
      retry: { minMs: value.retry.min, maxMs: value.retry.max, alertAfter: value.retry.alertAfter, giveUpAfterMs: value.retry.giveUpAfter },
    };
  }

  // A section that failed validation is reported already; its defaults stand in (the schema's, written once).
  const c = parsed.controller ?? sectionSchemas.controller.parse({});
  const d = parsed.director ?? sectionSchemas.director.parse({});
  const k = parsed.cluster ?? sectionSchemas.cluster.parse({});
  // A section with problems of its own is salvaged: a field may still hold what was written.
  const ref = (r: unknown): SecretRef | null => {
    if (r === null || typeof r !== 'object') return null;
    const o = r as { env?: unknown; file?: unknown };
    return typeof o.file === 'string' ? { file: abs(o.file) } : typeof o.env === 'string' ? { env: o.env } : null;
  };

  // Parts that others reach over a network must not trust whoever calls them.
  const beyondLoopback = [
    ...(!isLoopbackAddress(c.listen.host) ? [`controller.listen ${c.listen.host}`] : []),
    ...(!isLoopbackAddress(d.listen.host) ? [`director.listen ${d.listen.host}`] : []),
    ...Object.values(storage)
      .filter((x) => !isLoopbackAddress(x.listen.host))
      .map((x) => `storage.${x.name}.listen ${x.listen.host}`),
    ...Object.values(hosts)
      .filter((h) => !isLoopbackAddress(h.address))
      .map((h) => `hosts.${h.name}.address ${h.address}`),
  ];
  if (!k.secret && beyondLoopback.length > 0) {
    findings.push({
      path: parsed.cluster ? ['cluster'] : [],
      message: `parts listen beyond loopback (${beyondLoopback.slice(0, 3).join(', ')}${beyondLoopback.length > 3 ? ` and ${beyondLoopback.length - 3} more` : ''}) but cluster.secret is not set: anyone on that network could command them. Set cluster: { secret: { file: PATH } } (and tls: docs/operations.md, "Across machines")`,
    });
  }
  return {
    file: where.file,
    baseDir: where.baseDir,
    controller: {
      listen: c.listen,
      token: ref(c.token),
      stateDir: abs(c.state.dir),
      etcd: c.state.etcd,
      members: c.members ?? {},
      eventsKeep: c.events.keep,
      failover: {
        cooldownMs: c.failover.cooldown,
        flapWindowMs: c.failover.flapWindow,
        flapBackoffMs: c.failover.flapBackoff ?? c.failover.cooldown,
        drainTimeoutMs: c.failover.drainTimeout,
      },
    },
    cluster: {
      secret: ref(k.secret),
      tls:
        k.tls && typeof k.tls.ca === 'string' && typeof k.tls.cert === 'string' && typeof k.tls.key === 'string'
          ? { ca: abs(k.tls.ca), cert: abs(k.tls.cert), key: abs(k.tls.key) }
          : null,
    },
    director: {
      listen: d.listen,
      members: d.members ?? {},
      holdMaxRequests: d.hold.maxRequests,
      holdTimeoutMs: d.hold.timeout,
    },
    storage,
    hosts,
    pools,
    sites,
    ...(Object.keys(notify).length > 0 ? { notify } : {}),
  };
}

function compileRule(rule: SiteInput['transform'][number]): TransformRule {
  const set: Record<string, string> = {};
  const values: Record<string, number | boolean | null> = {};
  for (const [key, { value }] of Object.entries(rule.set ?? {})) {
    if (typeof value === 'string') set[key] = value;
    else values[key] = value;
  }
  return {
    file: rule.file,
    ...(rule.format !== undefined ? { format: rule.format } : {}),
    set,
    ...(Object.keys(values).length > 0 ? { values } : {}),
    ...(rule.replace !== undefined ? { replace: rule.replace.map((r) => ({ match: r.match, with: r.with })) } : {}),
  };
}

/**
 * `standby: spares` (a pool, or a single host), or `standby: [h3, spares]` (hosts and
 * pools, expanded in place, duplicates dropped). A pool that contains the site's own
 * primary is fine (pools are shared): the primary is left out. Naming the primary
 * explicitly is a mistake and reported.
 */
function expandStandby(
  site: string,
  value: SiteInput,
  pools: Record<string, string[]>,
  hostNames: Set<string>,
  poolNames: Set<string>,
  findings: Finding[],
): { hosts: string[]; pool?: string } {
  const base = ['sites', site, 'standby'];
  const list = typeof value.standby === 'string' ? [value.standby] : value.standby;
  const out: string[] = [];
  const add = (h: string): void => {
    if (h !== value.primary && !out.includes(h)) out.push(h);
  };
  list.forEach((item, i) => {
    const at = typeof value.standby === 'string' ? base : [...base, i];
    if (poolNames.has(item)) {
      for (const h of pools[item] ?? []) add(h);
    } else if (hostNames.has(item)) {
      if (item === value.primary) {
        findings.push({ path: at, message: `${item} is the site's primary; a standby must be another host` });
      }
      add(item);
    } else {
      const known = [...poolNames].map((p) => `pool ${p}`).concat([...hostNames]);
      findings.push({ path: at, message: `unknown pool or host ${item}${known.length ? ` (known: ${known.join(', ')})` : ''}` });
    }
  });
  if (out.length === 0 && !findings.some((f) => f.path.slice(0, 3).join('.') === base.join('.'))) {
    findings.push({
      path: base,
      message: 'names no standby host: a site needs at least one other host to fail over to',
    });
  }
  const pool = typeof value.standby === 'string' && poolNames.has(value.standby) ? value.standby : undefined;
  return pool !== undefined ? { hosts: out, pool } : { hosts: out };
}

/**
 * `volume.sync`: filled with its defaults for a sync-mode site (so the controller can
 * rely on it), kept as written for an async site (where it has no effect), absent
 * otherwise.
 */
function compileSync(replication: 'sync' | 'async', sync: { onReplicaLost: 'degrade' | 'strict'; timeout: number } | undefined): { sync?: SyncConfig } {
  if (sync !== undefined) return { sync: { onReplicaLost: sync.onReplicaLost, timeoutMs: sync.timeout } };
  if (replication === 'sync') {
    const dflt = sectionSchemas.sync.parse({});
    return { sync: { onReplicaLost: dflt.onReplicaLost, timeoutMs: dflt.timeout } };
  }
  return {};
}
