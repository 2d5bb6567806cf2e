/**
 * The compiled configuration: what every part of Understudy reads after
 * `loadConfig()` has parsed the YAML, applied defaults and checked references.
 * User input (YAML, durations like "200ms") → validated → this form
 * (durations as `*Ms`, addresses split, paths absolute). It is frozen.
 */

export type ReplicationMode = 'sync' | 'async';

/**
 * `sites.X.volume.sync`: the director holds a modifying request's answer until the
 * storage processor confirms the write is on the replica's disk, at most `timeoutMs`.
 * Then `degrade` releases answers unconfirmed (the volume is marked degraded until
 * the replica has caught up) and `strict` answers 503 US_SYNC_TIMEOUT.
 */
export interface SyncConfig {
  /** @default 'degrade' */
  onReplicaLost: 'degrade' | 'strict';
  /** @default 2000 (`timeout: 2s`) */
  timeoutMs: number;
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface EtcdStateConfig {
  /** Client URLs of the etcd members. */
  endpoints: string[];
  /** Key prefix of everything Understudy writes (`/understudy`). */
  prefix: string;
  /** The leader lease's ttl, the loop's period and the bound of one etcd call (Patroni: loop + 2 × retry ≤ ttl). */
  ttlMs: number;
  loopMs: number;
  retryMs: number;
}

export interface ControllerConfig {
  /** API, dashboard and /metrics. @default 127.0.0.1:7070 */
  listen: Endpoint;
  /** The operators' API token (`controller.token`); UNDERSTUDY_TOKEN, when set, wins. Required beyond loopback. */
  token?: SecretRef | null;
  /**
   * Directory of the embedded state store (absolute), and of the controller's local
   * files (logs, the BMC fence script) when the state is in etcd. @default .understudy/state
   */
  stateDir: string;
  /** `controller.state.etcd`: the state in etcd and a leader lease among several controllers; null for the embedded store. */
  etcd: EtcdStateConfig | null;
  /** `controller.members`: each controller's name and API address, where several elect a leader. */
  members: Record<string, Endpoint>;
  /** `controller.events.keep`: how many events the state keeps; older ones are forgotten (the newest of each kind and site stays). @default 20000 */
  eventsKeep: number;
  failover: FailoverGovernance;
}

/**
 * `controller.failover`: how automatic failovers are kept from flapping
 * (ActionGovernor). Each may be 0 (off).
 */
export interface FailoverGovernance {
  /**
   * Least time between two automatic failovers of one site that could be a flap
   * (from the end of one to the start of the next). An independent crash — hard
   * evidence, on a host that is not where the last failover came from, with a trusted
   * target other than that host — is not held back. @default 10000 (`cooldown: 10s`)
   */
  cooldownMs: number;
  /** A host that fails again this soon after it was trusted again flaps. @default 300000 (`flapWindow: 5m`) */
  flapWindowMs: number;
  /** How long a host that flapped is held out after its first flap; doubles at each further one, up to 10 minutes. @default `cooldownMs` */
  flapBackoffMs: number;
  /**
   * Once the old host is fenced (nothing more can be written), how long the failover
   * waits for the old host's storage system, when it still answers, to ship its last
   * writes to the replica before the replica is promoted. A storage system that went
   * down with the host answers at once (refused) or not at all (this bound). 0: never
   * wait, promote what the replica holds. @default 1000 (`drainTimeout: 1s`)
   */
  drainTimeoutMs: number;
}

export interface DirectorConfig {
  /** Admin API of the built-in director (routes, stats). @default 127.0.0.1:7071 */
  listen: Endpoint;
  /**
   * `director.members`: several directors that share the sites' fronts (a floating
   * address moved by VRRP, keepalived), each one's name and admin address. The
   * controller sends every route to each. Empty: the one director at `listen`.
   */
  members: Record<string, Endpoint>;
  /** Requests held while a site has no routable primary. @default 1000 */
  holdMaxRequests: number;
  /** How long a held request waits before it gets 503 + Retry-After. @default 5000 */
  holdTimeoutMs: number;
}

export interface StorageConfig {
  name: string;
  /** Absolute directory where this storage system keeps its volumes. */
  path: string;
  /** The storage processor's API. @default 127.0.0.1:(7100 + index) */
  listen: Endpoint;
  /** A backup (vault) storage system: never a replication target. @default false */
  backup: boolean;
}

/**
 * What a host is (`hosts.X.profile`). Transform templates read it
 * (`{{host.profile.cpus}}`, `{{host.profile.memoryMb / 4}}`, `{{host.profile.paths.logs}}`)
 * to fit a replica to a host that differs from the previous one. Keys other than
 * these are kept as written and are readable the same way.
 */
export interface HostProfile {
  /** Processor cores. @default 1 */
  cpus: number;
  /** Memory in MiB. @default 1024 */
  memoryMb: number;
  /**
   * Named absolute directories on this host (`{ logs: /var/log/shop, cache: /tmp/shop-cache }`),
   * for `{{host.profile.paths.<name>}}`. @default absent (no named paths)
   */
  paths?: Record<string, string>;
  /** The operating-system user the site runs as on this host, for `{{host.profile.user}}`. @default absent */
  user?: string;
  [key: string]: unknown;
}

/** `hosts.X.power.ipmi`: the host's BMC (IPMI v2.0, `ipmitool -I lanplus`). */
export interface IpmiPower {
  address: string;
  /** @default 623 */
  port: number;
  user: string;
  /** Absolute path of a file holding the BMC password (relative paths resolve against the config file's directory); never logged. */
  passwordFile: string;
  /** IPMI cipher suite (`ipmitool -C`). @default 17 */
  cipherSuite: number;
  /** Power wait: how long after `chassis power off` the first status is asked. @default 0 */
  waitMs: number;
  /** Status polls: how often `chassis power status` is asked until it says off. @default 250 */
  pollMs: number;
  /** Power timeout: how long a cut may take to be confirmed before it counts as unconfirmed. @default 10000 */
  timeoutMs: number;
}

export interface HostConfig {
  name: string;
  /** The host's own address (embedded: 127.0.N.1). */
  address: string;
  /** Name of the storage system the host is attached to. */
  storage: string;
  /** Relay driver: `local` (the host is a process group of this machine) or the host's BMC over IPMI. @default 'local' */
  power: 'local' | { ipmi: IpmiPower };
  profile: HostProfile;
  /** Port of the host agent's API on `address`. @default 7001 */
  agentPort: number;
  /**
   * Whether `up` powers the host on. @default true for a site's primary and for
   * the first standby of each site (a warm standby), false for other hosts.
   */
  boot: boolean;
}

export interface AppConfig {
  /**
   * argv of the site's application, as written: each element is a template
   * (`{{host.address}}`, `{{site.app.port}}`, `{{host.profile.cpus}}` …) rendered for
   * the host it starts on (src/transform/render-app.ts). Run with cwd = `baseDir`
   * (the config file's directory); `node` as a program is the running Node.js.
   */
  command: string[];
  /** Port the app listens on, on the host's address. */
  port: number;
  /** Absolute directory copied into a fresh volume (may be undefined). */
  seed?: string;
  /**
   * Extra environment, values being templates like `command`'s. The app also gets
   * DATA_DIR, UNDERSTUDY_SITE, UNDERSTUDY_HOST, UNDERSTUDY_ADDRESS and UNDERSTUDY_PORT.
   */
  env: Record<string, string>;
  /** How long a start waits for the app's first healthy probe before it fails. @default 30000 (`startTimeout: 30s`); always set by loadConfig */
  startTimeoutMs?: number;
}

/**
 * `health.probe`. `http` (the default): GET `path`; healthy is any 2xx or 3xx
 * (redirects are not followed) unless `expect` says otherwise. `tcp`: healthy is a
 * connection accepted on the app's port. Either way the probe goes to the address
 * of the host it judges: who answered is known from the address called, never
 * from the answer.
 */
export interface ProbeConfig {
  /** @default 'http' (absent: http); always set by loadConfig */
  type?: 'http' | 'tcp';
  /** The HTTP path. @default '/healthz' ('' for a tcp probe) */
  path: string;
  /**
   * Tightens what counts as healthy: `status`, codes ("200") and classes ("2xx"),
   * one of which must match; `body`, a regular expression the answer's first 64 KiB
   * must match. Absent: any 2xx or 3xx.
   */
  expect?: { status?: string[]; body?: string };
  everyMs: number;
  timeoutMs: number;
  fall: number;
  rise: number;
}

/** The formats a transform rule may name in `format:`; `text` is the one of `replace` rules. */
export type TransformFormat = 'json' | 'yaml' | 'ini' | 'env' | 'text';

/**
 * One entry of `sites.X.transform`: either a `set` rule (dotted keys of a JSON,
 * YAML, INI or .env file) or a `replace` rule (regular expressions in any file).
 */
export interface TransformRule {
  /** Path relative to the volume root. */
  file: string;
  /**
   * The file's format. @default by its name: `.json`; `.yaml`/`.yml`; `.ini`/`.cfg`;
   * `.env`, `.env.*` → env; `text` for a replace rule. Absent unless written.
   */
  format?: TransformFormat;
  /**
   * Dotted key → template (`{{host.address}}`, `{{host.profile.cpus}}`,
   * `{{host.profile.memoryMb / 4}}`, `{{site.name}}`). Empty for a replace rule.
   */
  set: Record<string, string>;
  /**
   * Dotted key → literal value that is not a string in the YAML (`debug: false`,
   * `workers: 2`), set as is. Absent when there are none. Keys never overlap `set`.
   */
  values?: Record<string, number | boolean | null>;
  /**
   * Plain-text edits, in order: each `match` (a JavaScript regular expression, `m`
   * flag) must match exactly once; the matched text becomes the rendered `with`
   * template, literally. Absent for a set rule.
   */
  replace?: TransformReplace[];
}

export interface TransformReplace {
  match: string;
  with: string;
}

export interface SiteConfig {
  name: string;
  front: Endpoint;
  app: AppConfig;
  primary: string;
  /** Hosts that may take the site over, in order of preference (pool names expanded). */
  standby: string[];
  /** The pool name if `standby` was given as one. */
  standbyPool?: string;
  /**
   * Which site gets a spare when several sites want the last free one at about the
   * same time: the higher priority; at equal priority the site that failed first
   * (src/controller/spare-pool.ts). Never takes a spare back from a serving primary. @default 0
   */
  priority: number;
  volume: {
    replication: ReplicationMode;
    readonly: string[];
    backup?: { to: string; everyMs: number; keep: number };
    /** Present for `replication: sync` (defaults filled) and wherever `volume.sync` is written. */
    sync?: SyncConfig;
  };
  transform: TransformRule[];
  health: {
    probe: ProbeConfig;
    malfunction: { errorRate: number; windowMs: number };
    performance: { p95Ms: number; windowMs: number };
  };
  /**
   * Scale reads out: `max` hosts at most (primary included); `cooldownMs`
   * between two scale-outs; `stabilizationMs` of low load before a scale-in;
   * `readPaths` readers may serve (absent: every path; the reader answers 421 for
   * what it does not hold).
   */
  scale: { max: number; cooldownMs: number; /** @default 30000 */ stabilizationMs?: number; readPaths?: string[] };
}

/** A secret's source: written in the config (no secret), an environment variable, or a file (read when used). */
export type SecretSource = { value: string } | { env: string } | { file: string };
/** A secret that is never written in the config: an environment variable or a file (absolute). */
export type SecretRef = { env: string } | { file: string };

/**
 * `cluster`: how the parts authenticate each other (src/shared/cluster-transport.ts).
 * Both absent: the parts trust whoever calls, which the config allows only while every
 * part listens on loopback (the embedded default).
 */
export interface ClusterConfig {
  /** Every internal call carries it; every part refuses a call without it. */
  secret: SecretRef | null;
  /** Absolute paths; `{{part}}` in `cert` and `key` is the part's name. */
  tls: { ca: string; cert: string; key: string } | null;
}

/**
 * `notify.X`: one place events are delivered to (src/notify/), at least once, from a
 * durable queue in the state store, each target in event order.
 */
export interface NotifyTarget {
  name: string;
  /** POST of the event as JSON; a 2xx answer is a delivery. Header values may be secrets. */
  webhook?: { url: string; headers: Record<string, SecretSource>; /** @default 5000 */ timeoutMs: number };
  /** The event as JSON on stdin (and UNDERSTUDY_EVENT_* variables); exit 0 is a delivery. Run with cwd = baseDir. */
  command?: { run: string[]; /** @default 10000 */ timeoutMs: number };
  /** Event kinds or patterns (`*` = any characters). @default ['*'] */
  events: string[];
  /** Only these sites' events (events of no site are left out too). @default absent: every event */
  sites?: string[];
  retry: {
    /** First wait after a failed delivery; it doubles each time. @default 1000 */
    minMs: number;
    /** Longest wait between two attempts. @default 60000 */
    maxMs: number;
    /** After this many failed attempts in a row, a `notify-failing` event is raised. @default 5 */
    alertAfter: number;
    /** A notification still undelivered this long after its event is given up (`notify-given-up`). @default 86400000 */
    giveUpAfterMs: number;
  };
}

export interface UnderstudyConfig {
  /** Absolute path of the file this was loaded from. */
  file: string;
  /** Directory relative paths in the file are resolved against: the file's own directory (as Docker Compose does). */
  baseDir: string;
  controller: ControllerConfig;
  /** Absent in hand-made configs (tests): as if both were unset. */
  cluster?: ClusterConfig;
  director: DirectorConfig;
  storage: Record<string, StorageConfig>;
  hosts: Record<string, HostConfig>;
  pools: Record<string, string[]>;
  sites: Record<string, SiteConfig>;
  /** Where events are delivered (`notify:`). Absent or empty: nowhere. */
  notify?: Record<string, NotifyTarget>;
}

export function endpointToString(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export function endpointUrl(e: Endpoint): string {
  return `http://${endpointToString(e)}`;
}
