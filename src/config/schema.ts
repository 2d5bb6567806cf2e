import { checkLeaseTimings } from './lease-timings.ts';
import { z } from 'zod';
import { DURATION_MESSAGE, parseDuration } from './duration.ts';
import { ADDRESS_MESSAGE, DEFAULT_CONTROLLER_LISTEN, ENDPOINT_MESSAGE, isAddress, isPort, parseEndpoint } from './endpoint.ts';
import { checkTemplate } from '../transform/template.ts';
import { FORMAT_HINT, FORMAT_NAMES, formatFor } from '../transform/formats/index.ts';
import { compilePattern } from '../transform/text-replace.ts';

/**
 * The config file as an operator writes it (docs/configuration.md),
 * validated field by field with defaults applied. Durations come out as
 * milliseconds and addresses as endpoints; `compile.ts` then resolves paths,
 * expands pools and fills defaults that depend on other sections. Every object is
 * strict: an unknown key (a typo) is an error, never silently ignored.
 */

export const NAME_MESSAGE = 'names may use letters, digits, - and _, and must start with a letter or digit';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/** A user-facing message on any value that fails `check`; `undefined` means "is required" (set in issueMessage). */
function custom<T>(message: string, convert: (v: unknown) => T | undefined) {
  return z.unknown().transform((v, ctx): T => {
    const out = v === undefined ? undefined : convert(v);
    if (out === undefined) {
      ctx.addIssue({ code: 'custom', message: v === undefined ? 'is required' : message });
      return z.NEVER;
    }
    return out;
  });
}

/** A positive duration ("200ms", "5s") → milliseconds. */
const duration = custom(DURATION_MESSAGE, (v) => {
  const ms = parseDuration(v);
  return ms !== undefined && ms > 0 ? ms : undefined;
});

/** A duration that may be zero ("0s": the setting is off) → milliseconds. */
const durationOrOff = custom('must be a duration like 10s (0s turns it off)', (v) => {
  const ms = parseDuration(v);
  return ms !== undefined && ms >= 0 ? ms : undefined;
});

const endpoint = custom(ENDPOINT_MESSAGE, parseEndpoint);
const address = custom(ADDRESS_MESSAGE, (v) => (isAddress(v) ? v : undefined));
const port = custom('must be a port number (1-65535)', (v) => (isPort(v) ? v : undefined));

function int(min: number, what = `a whole number of at least ${min}`) {
  return custom(`must be ${what}`, (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min ? v : undefined));
}

const text = custom('must be a non-empty string', (v) => (typeof v === 'string' && v.trim() !== '' ? v : undefined));
const name = custom(`must be a name (${NAME_MESSAGE})`, (v) => (typeof v === 'string' && NAME_RE.test(v) ? v : undefined));
const bool = custom('must be true or false', (v) => (typeof v === 'boolean' ? v : undefined));

/** A path inside a volume: relative, without `..`. */
const volumePath = custom('must be a path inside the volume (relative, without ..)', (v) => {
  if (typeof v !== 'string' || v.trim() === '' || v.startsWith('/') || /^[A-Za-z]:/.test(v)) return undefined;
  return v.split(/[\\/]/).includes('..') ? undefined : v;
});

const recordKey = z.string().regex(NAME_RE, { error: NAME_MESSAGE });

// ---------------------------------------------------------------- sections

/**
 * `controller.failover`: the no-flapping settings of automatic failovers.
 * `cooldown`: least time between two automatic failovers of one site that could be a
 * flap (an independent crash is not held back, see ActionGovernor). `flapWindow`: a
 * host that fails again this soon after it was trusted again flaps and is held out.
 * `flapBackoff`: that hold-out after the first flap, doubling at each further one
 * (up to 10 minutes); absent: the cooldown. `drainTimeout`: how long a failover waits,
 * once the old host is fenced, for its storage system to ship the last writes to the
 * replica before the replica is promoted (off: never wait).
 */
const failover = z
  .strictObject({
    cooldown: durationOrOff.default(10_000),
    flapWindow: durationOrOff.default(300_000),
    flapBackoff: durationOrOff.optional(),
    drainTimeout: durationOrOff.default(1000),
  })
  .prefault({});

/** A secret that is never written in the config: `{ env: NAME }` or `{ file: PATH }` (read when used, never logged). */
const secretRef = custom('must be { env: NAME } or { file: PATH } (a secret is never written in the config itself)', (v) => {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && typeof o.env === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(o.env)) return { env: o.env };
    if (keys.length === 1 && typeof o.file === 'string' && o.file.trim() !== '') return { file: o.file };
  }
  return undefined;
});

/**
 * `cluster`: how the parts authenticate each other. `secret`: every internal call carries
 * it and every part refuses a call without it. `tls`: every internal endpoint is served
 * over TLS with `cert`/`key` and callers verify it against `ca`; `{{part}}` in a path is
 * the part's name (a host, a storage system, `director`, `controller`), so that one config
 * file names each machine's own certificate.
 */
const cluster = z
  .strictObject({
    secret: secretRef.optional(),
    tls: z.strictObject({ ca: text, cert: text, key: text }).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.tls && !c.secret)
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'is required with tls: TLS proves who serves, the cluster secret proves who calls' });
  })
  .prefault({});

const etcdUrl = custom('must be an etcd client URL like http://10.0.0.5:2379', (v) => {
  if (typeof v !== 'string') return undefined;
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname === '/' && !u.search ? v.replace(/\/$/, '') : undefined;
  } catch {
    return undefined;
  }
});

/** `controller.state.etcd`: the state in etcd and the leader lease (Patroni's timings; loop and retry derived from ttl unless set). */
const etcdState = z
  .strictObject({
    endpoints: z.array(etcdUrl, { error: 'must be a list of etcd client URLs' }).min(1, 'must name at least one etcd member'),
    prefix: custom('must be a key prefix like /understudy (starts with /, no trailing /)', (v) =>
      typeof v === 'string' && /^\/[^\s]*[^/\s]$/.test(v) ? v : undefined,
    ).default('/understudy'),
    ttl: duration.default(10_000),
    loop: duration.optional(),
    retry: duration.optional(),
  })
  .transform((e, ctx) => {
    const loop = e.loop ?? Math.min(1000, Math.floor(e.ttl / 4));
    const retry = e.retry ?? Math.min(3000, Math.floor((e.ttl - loop) / 2 / 100) * 100);
    const bad = checkLeaseTimings({ ttlMs: e.ttl, loopMs: loop, retryMs: retry });
    if (bad) ctx.addIssue({ code: 'custom', message: bad });
    return { endpoints: e.endpoints, prefix: e.prefix, ttlMs: e.ttl, loopMs: loop, retryMs: retry };
  });

const stateDir = custom('must be a directory path', (v) => (typeof v === 'string' && v.trim() !== '' ? v : undefined));

/** `controller.state`: a directory (the embedded SQLite store), or `{ etcd: {…}, dir? }` where several controllers share it. */
const controllerState = z.union([
  stateDir.transform((dir) => ({ dir, etcd: null })),
  z.strictObject({ etcd: etcdState, dir: stateDir.default('.understudy/state') }),
]);

const controller = z
  .strictObject({
    listen: endpoint.default({ ...DEFAULT_CONTROLLER_LISTEN }),
    /** The operators' API token (CLI, dashboard); required when `listen` is beyond loopback. UNDERSTUDY_TOKEN, when set, is used instead. */
    token: secretRef.optional(),
    state: controllerState.default({ dir: '.understudy/state', etcd: null }),
    /** Where controllers elect a leader: each controller's name and API address (`understudy controller --name NAME`). */
    members: z.record(recordKey, endpoint, { error: 'must be a map of name: address:port' }).optional(),
    /** How many events the state keeps (the oldest go first; see StateStore.pruneEvents). */
    events: z.strictObject({ keep: int(100).default(20_000) }).prefault({}),
    failover,
  })
  .superRefine((c, ctx) => {
    if (c.members && !c.state.etcd)
      ctx.addIssue({
        code: 'custom',
        path: ['members'],
        message: 'needs controller.state: { etcd: { endpoints: [...] } }: several controllers share their state only through etcd',
      });
  })
  .prefault({});

const director = z
  .strictObject({
    listen: endpoint.default({ host: '127.0.0.1', port: 7071 }),
    /** Several directors sharing the fronts (VRRP): each one's name and admin address (`understudy director --name NAME`). */
    members: z.record(recordKey, endpoint, { error: 'must be a map of name: address:port' }).optional(),
    hold: z
      .strictObject({
        maxRequests: int(0).default(1000),
        timeout: duration.default(5000),
      })
      .prefault({}),
  })
  .prefault({});

const storage = z.strictObject({
  path: text,
  backup: bool.default(false),
  /** @default 127.0.0.1:(7100 + index in file order) — set in compile.ts */
  listen: endpoint.optional(),
});

/** An absolute directory on a host (no control characters: it ends up in config files). */
const absolutePath = custom('must be an absolute path like /var/log/shop', (v) =>
  typeof v === 'string' && v.startsWith('/') && ![...v].some((c) => c < ' ') ? v : undefined,
);
const userName = custom('must be a user name (letters, digits, _ and -, starting with a letter or _)', (v) =>
  typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_-]{0,31}$/.test(v) ? v : undefined,
);

/** `hosts.X.profile`: cpus and memoryMb (defaults 1 and 1024), optional paths and user; other keys kept. */
const profile = z
  .looseObject({
    cpus: int(1).default(1),
    memoryMb: int(1).default(1024),
    paths: z.record(recordKey, absolutePath, { error: 'must be a map of name: absolute path' }).optional(),
    user: userName.optional(),
  })
  .prefault({});

/**
 * `hosts.X.power.ipmi`: the host's BMC, driven with `ipmitool -I lanplus`. A cut is
 * `chassis power off`, then `chassis power status` every `poll` (first after `wait`)
 * until it says off, for at most `timeout`.
 */
const ipmi = z.strictObject({
  address,
  port: port.default(623),
  user: text,
  passwordFile: text,
  cipherSuite: int(0).default(17),
  wait: durationOrOff.default(0),
  poll: duration.default(250),
  timeout: duration.default(10_000),
});

const host = z.strictObject({
  address,
  storage: name,
  power: z
    .union([
      custom('must be local, or { ipmi: { address, user, passwordFile } }', (v) => (v === 'local' ? ('local' as const) : undefined)),
      z.strictObject({ ipmi }),
    ])
    .default('local'),
  profile,
  agentPort: port.default(7001),
  /** @default true for a site's primary and first standby — set in compile.ts */
  boot: bool.optional(),
});

/**
 * A string of `app.command` or `app.env` that may hold `{{…}}` placeholders (the
 * transform's, and `{{volume.path}}`), checked here so that a typo is a file:line:col error.
 */
function templated<T extends z.ZodType<string>>(schema: T) {
  return schema.superRefine((v, ctx) => {
    const problem = checkTemplate(v, { app: true });
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });
}

const envValue = templated(
  custom('must be a string, number or boolean', (v) => (typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined)),
);

/**
 * `sites.X.app`. `command` and `env` values are templates, rendered per host
 * (`[node, app.mjs, --listen, "{{host.address}}:{{site.app.port}}"]`).
 * `startTimeout`: how long a start waits for the app's first healthy probe.
 */
const app = z.strictObject({
  command: z.array(templated(text), { error: 'must be a list like [node, server.js]' }).min(1, { error: 'must name a program to run' }),
  port,
  seed: text.optional(),
  env: z.record(z.string(), envValue, { error: 'must be a map of NAME: value' }).default({}),
  startTimeout: duration.default(30_000),
});

const standby = custom('must be a pool name or a list of host names', (v) => {
  if (typeof v === 'string' && v.trim() !== '') return v;
  if (Array.isArray(v) && v.every((h) => typeof h === 'string' && h.trim() !== '')) return v as string[];
  return undefined;
});

const backup = z.strictObject({
  to: name,
  every: duration.default(30_000),
  keep: int(1).default(20),
});

/**
 * Sync mode (`replication: sync`): how long the director holds a write's answer for
 * the replica's confirmation, and what happens when the replica does not confirm in
 * time. `degrade` (default): the volume is marked degraded and answers go out
 * unconfirmed until the replica has caught up again. `strict`: the client gets 503
 * US_SYNC_TIMEOUT instead of an unconfirmed success.
 */
const sync = z.strictObject({
  onReplicaLost: custom('must be degrade or strict', (v) => (v === 'degrade' || v === 'strict' ? v : undefined)).default('degrade'),
  // The director and the storage processor cap a barrier at 60 s: a longer one could never be routed.
  timeout: custom('must be a duration from 1ms to 60s, like 2s', (v) => {
    const ms = parseDuration(v);
    return ms !== undefined && ms > 0 && ms <= 60_000 ? ms : undefined;
  }).default(2000),
});

const volume = z
  .strictObject({
    replication: custom('must be sync or async', (v) => (v === 'sync' || v === 'async' ? v : undefined)).default('async'),
    readonly: z.array(volumePath, { error: 'must be a list of paths in the volume' }).default([]),
    backup: backup.optional(),
    sync: sync.optional(),
  })
  .prefault({});

const dottedKey = z.string().regex(/^[^.\s]+(\.[^.\s]+)*$/, { error: 'must be a dotted key like listen.host' });
const setValue = custom('must be a template string, a number, true/false or null', (v) => {
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return { value: v };
  if (typeof v === 'string') return { value: v };
  return undefined;
}).superRefine((out, ctx) => {
  if (typeof out.value === 'string') {
    const problem = checkTemplate(out.value);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  }
});

const template = custom('must be a template string', (v) => (typeof v === 'string' ? v : undefined)).superRefine((v, ctx) => {
  const problem = checkTemplate(v);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

const pattern = custom('must be a regular expression (a non-empty string)', (v) => (typeof v === 'string' && v !== '' ? v : undefined)).superRefine(
  (v, ctx) => {
    try {
      compilePattern(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  },
);

const formatName = custom(`must be one of ${FORMAT_NAMES.join(', ')}`, (v) => FORMAT_NAMES.find((f) => f === v));

/**
 * `{ file, set: { dotted.key: template } }` for JSON, YAML, INI and .env files (format
 * by the file's name or `format:`), or `{ file, replace: [{ match: regex, with: template }] }`
 * for any file as text.
 */
const transformRule = z
  .strictObject({
    file: volumePath,
    format: formatName.optional(),
    set: z.record(dottedKey, setValue, { error: 'must be a map of dotted key: template' }).optional(),
    replace: z
      .array(z.strictObject({ match: pattern, with: template }), { error: 'must be a list of { match: regex, with: template }' })
      .min(1, { error: 'must list at least one { match, with }' })
      .optional(),
  })
  .superRefine((rule, ctx) => {
    if (rule.set !== undefined && rule.replace !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['replace'], message: 'a rule has either set or replace, not both' });
    } else if (rule.set === undefined && rule.replace === undefined) {
      ctx.addIssue({ code: 'custom', message: 'needs set: { key: template } or replace: [{ match, with }]' });
    } else if (rule.replace !== undefined) {
      if (rule.format !== undefined && rule.format !== 'text')
        ctx.addIssue({ code: 'custom', path: ['format'], message: `replace rules edit text; format ${rule.format} applies to set rules` });
    } else if (rule.format === 'text') {
      ctx.addIssue({ code: 'custom', path: ['format'], message: 'format text takes replace rules, not set' });
    } else if (rule.format === undefined && typeof rule.file === 'string' && formatFor(rule.file) === undefined) {
      ctx.addIssue({ code: 'custom', path: ['file'], message: `no format is known for this file name (${FORMAT_HINT})` });
    }
  });

/** `health.probe.expect.status`: codes (200) and classes ("2xx"). */
const statusMatch = custom('must be a status code like 200 or a class like 2xx', (v) => {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 100 && v <= 599) return String(v);
  if (typeof v === 'string' && /^[1-5](\d\d|xx)$/i.test(v)) return v.toLowerCase();
  return undefined;
});
const bodyPattern = custom('must be a regular expression (a non-empty string)', (v) => (typeof v === 'string' && v !== '' ? v : undefined)).superRefine(
  (v, ctx) => {
    try {
      new RegExp(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `not a valid regular expression (${(e as Error).message})` });
    }
  },
);

/**
 * `health.probe`: `type: http` (default) asks `path` and counts any 2xx or 3xx as
 * healthy unless `expect` tightens it (`status: [200, 2xx]`, `body: <regex>`);
 * `type: tcp` only connects to the app's port (apps without a health path).
 */
const probe = z
  .strictObject({
    type: custom('must be http or tcp', (v) => (v === 'http' || v === 'tcp' ? v : undefined)).default('http'),
    path: custom('must be a URL path starting with /', (v) => (typeof v === 'string' && v.startsWith('/') ? v : undefined)).optional(),
    expect: z
      .strictObject({
        status: z
          .array(statusMatch, { error: 'must be a list like [200, 2xx]' })
          .min(1, { error: 'must list at least one status (leave it out for any 2xx or 3xx)' })
          .optional(),
        body: bodyPattern.optional(),
      })
      .optional(),
    every: duration.default(200),
    timeout: duration.default(500),
    fall: int(1).default(2),
    rise: int(1).default(2),
  })
  .superRefine((p, ctx) => {
    if (p.type !== 'tcp') return;
    if (p.path !== undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'a tcp probe only connects: it has no path (use type: http)' });
    if (p.expect !== undefined)
      ctx.addIssue({ code: 'custom', path: ['expect'], message: 'a tcp probe only connects: it has no answer to expect (use type: http)' });
  })
  .prefault({});

const health = z
  .strictObject({
    probe,
    malfunction: z
      .strictObject({
        errorRate: custom('must be a fraction between 0 and 1, like 0.2', (v) => (typeof v === 'number' && v > 0 && v <= 1 ? v : undefined)).default(0.2),
        window: duration.default(5000),
      })
      .prefault({}),
    performance: z
      .strictObject({
        p95: duration.default(300),
        window: duration.default(10_000),
      })
      .prefault({}),
  })
  .prefault({});

/**
 * Scale reads out. `max`: hosts serving the site at most, primary included
 * (1 = never scale out). `cooldown`: least time between two scale-outs of the site.
 * `stabilization`: how long the load must stay low (every host's p95 under half the
 * threshold) before a reader is given back. `readPaths`: request paths readers may
 * serve (exact, or a prefix ending in `*`); default every path, the reader answering
 * 421 for what it does not hold.
 */
const readPath = custom('must be a URL path starting with /, optionally ending in * (a prefix), like /api/products or /public/*', (v) =>
  typeof v === 'string' && /^\/[^\s*]*\*?$/.test(v) ? v : undefined,
);
const scale = z
  .strictObject({
    max: int(1).default(1),
    cooldown: duration.default(30_000),
    stabilization: duration.default(30_000),
    readPaths: z
      .array(readPath, { error: 'must be a list of URL paths like /api/products or /public/*' })
      .min(1, { error: 'must list at least one path (leave it out for every path)' })
      .optional(),
  })
  .prefault({});

/** `sites.X.priority`: any whole number (negative allowed); higher wins a contested spare. */
const priority = custom('must be a whole number, like 10 or -5 (higher wins a contested spare)', (v) =>
  typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined,
);

const site = z.strictObject({
  front: endpoint,
  app,
  primary: name,
  standby,
  /** @default 0 — which site gets the last free spare when several fail over at once (see spare-pool.ts). */
  priority: priority.default(0),
  volume,
  transform: z.array(transformRule, { error: 'must be a list of { file, set } or { file, replace } rules' }).default([]),
  health,
  scale,
});

/**
 * `notify.X`: where events go (src/notify/). A webhook (POST of the event as JSON) or a
 * command (the event as JSON on its stdin), for the events whose kind matches one of
 * `events` (`*` matches any run of characters: `failover-*`) and, with `sites`, only
 * those sites' events. A header value is a literal string, or `{ env: NAME }` /
 * `{ file: PATH }` for a secret (read at each delivery, never logged).
 */
const secret = custom('must be a string, { env: NAME } or { file: PATH }', (v) => {
  if (typeof v === 'string') return { value: v };
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && typeof o.env === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(o.env)) return { env: o.env };
    if (keys.length === 1 && typeof o.file === 'string' && o.file.trim() !== '') return { file: o.file };
  }
  return undefined;
});
const webhookUrl = custom('must be an http:// or https:// URL', (v) => {
  if (typeof v !== 'string') return undefined;
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? v : undefined;
  } catch {
    return undefined;
  }
});
const eventPattern = custom('must be an event kind like failover-complete, or a pattern like failover-* or *', (v) =>
  typeof v === 'string' && /^[a-z0-9*][a-z0-9*-]*$/.test(v) ? v : undefined,
);
const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, { error: 'must be an HTTP header name like Authorization' });
const notifyTarget = z
  .strictObject({
    webhook: z
      .strictObject({
        url: webhookUrl,
        headers: z.record(headerName, secret, { error: 'must be a map of Header-Name: value' }).default({}),
        timeout: duration.default(5000),
      })
      .optional(),
    command: z
      .strictObject({
        run: z.array(text, { error: 'must be a list like [scripts/page.sh, --urgent]' }).min(1, { error: 'must name a program to run' }),
        timeout: duration.default(10_000),
      })
      .optional(),
    events: z
      .array(eventPattern, { error: 'must be a list of event kinds or patterns like [failover-*, drill-complete]' })
      .min(1, { error: 'must list at least one event kind (or leave it out for every event)' })
      .default(['*']),
    sites: z.array(name, { error: 'must be a list of site names' }).optional(),
    retry: z
      .strictObject({
        min: duration.default(1000),
        max: duration.default(60_000),
        alertAfter: int(1).default(5),
        giveUpAfter: duration.default(24 * 3600_000),
      })
      .prefault({}),
  })
  .superRefine((t, ctx) => {
    if ((t.webhook === undefined) === (t.command === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'needs exactly one of webhook: { url } or command: { run: [program, ...] }' });
    }
    if (typeof t.retry.min === 'number' && typeof t.retry.max === 'number' && t.retry.max < t.retry.min) {
      ctx.addIssue({ code: 'custom', path: ['retry', 'max'], message: 'must be at least retry.min' });
    }
  });

/**
 * The schemas of each part of the file. `load-config.ts` validates the file section
 * by section and entry by entry, so that one broken host does not hide the
 * problems of the others (and the reference checks still run on the rest).
 */
export const sectionSchemas = {
  controller,
  cluster,
  director,
  /** `sites.X.volume.sync`, for the defaults of a sync-mode site that does not write it. */
  sync,
  storage,
  host,
  pool: z.array(name, { error: 'must be a list of host names' }),
  site,
  notify: notifyTarget,
  recordKey,
  nameMessage: NAME_MESSAGE,
} as const;

/** The top level: which sections exist; each is validated by its own schema. */
export const topLevelSchema = z.strictObject(
  {
    controller: z.unknown().optional(),
    cluster: z.unknown().optional(),
    director: z.unknown().optional(),
    storage: z.unknown().optional(),
    hosts: z.unknown().optional(),
    pools: z.unknown().optional(),
    sites: z.unknown().optional(),
    notify: z.unknown().optional(),
  },
  { error: 'the file must be a YAML map with controller, cluster, director, storage, hosts, pools, sites and notify' },
);

export type ControllerInput = z.output<typeof controller>;
export type ClusterInput = z.output<typeof cluster>;
export type DirectorInput = z.output<typeof director>;
export type StorageInput = z.output<typeof storage>;
export type HostInput = z.output<typeof host>;
export type SiteInput = z.output<typeof site>;
export type NotifyInput = z.output<typeof notifyTarget>;
