import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Agent, request, type Dispatcher } from 'undici';
import { BIN, ROOT, configYaml, jsonOrText, sleep, testDir, waitUntil, type HttpAnswer } from './cluster.ts';
import { createRig, type Rig } from './machines.ts';
import { waitServing, type Status } from './views.ts';
import { startEtcd, type EtcdCluster } from './etcd.ts';

/**
 * Test support: Understudy with every part on its own machine of the rig
 * (test/support/machines.ts): hosts h1…hN (each with an ipmi_sim BMC on the
 * management network, `power: { ipmi: … }`), storage nodes `sa` (array-a) and `sb`
 * (array-b), the director `dir` and the controller `ctl`, all started from one
 * config file with `understudy storage|director|controller`; a host's agent is
 * started by its BMC's chassis control (test/support/bmc-chassis.sh) when the
 * controller powers it on. The test process reaches the rig as a client through
 * the router. `stop()` kills everything and removes the rig, also on failure.
 *
 * As on real machines, the parts authenticate each other: a cluster secret and TLS
 * with a certificate per part (`understudy certs`); the test reaches the parts'
 * endpoints with the secret and the cluster CA (`rigGet`), the API with the token.
 */

export interface RigClusterOptions {
  /** Hosts in order; h1 is the primary, the others its standbys. */
  hosts?: { name: string; storage: 'array-a' | 'array-b' }[];
  replication?: 'sync' | 'async';
  /** `power.ipmi` timing, as YAML durations. */
  ipmi?: { wait?: string; poll?: string; timeout?: string };
  env?: Record<string, string>;
  /**
   * Several controllers, each on its own machine (named so), sharing their state in a
   * three-member etcd on machines e1…e3 (`controller.state.etcd`, `controller.members`).
   * Without it: one controller on `ctl` with the embedded state.
   */
  controllers?: string[];
  /**
   * Several directors, each on its own machine (named so), on one LAN, sharing the
   * site's front on a floating address moved by VRRP (keepalived, `track_script` on the
   * director's `/v1/ready`). Without it: one director on `dir`.
   */
  directors?: string[];
  /** The leader lease's timings, as YAML durations. @default ttl 3s, loop 300ms, retry 1s */
  lease?: { ttl: string; loop: string; retry: string };
}

export interface RigCluster {
  rig: Rig;
  dir: string;
  configFile: string;
  front: string;
  api: string;
  /**
   * A call to the controller's API with its token (the controller listens beyond loopback: it has one); `token: null` sends none.
   * With several controllers: to the one that leads now (asked of each), else the first that answers.
   */
  call(p: string, init?: { method?: string; body?: unknown; timeoutMs?: number; token?: null }): Promise<HttpAnswer>;
  /** With several controllers: their names, a call to one of them, and which one leads now (asked of each; null: none says it leads). */
  controllers: string[];
  callTo(controller: string, p: string, init?: { method?: string; body?: unknown; timeoutMs?: number; token?: null }): Promise<HttpAnswer>;
  leader(): Promise<string | null>;
  /** The etcd members of a rig with several controllers. */
  etcd: EtcdCluster | null;
  /** The operators' API token the controllers were given (UNDERSTUDY_TOKEN), for the CLI. */
  apiToken: string;
  /** SIGKILLs one part's process (`director-da`, `storage-sa`, `controller-c1`) and waits until it is gone. */
  killPart(part: string): Promise<void>;
  /** Sends `signal` to one part's process and waits until it exits; its exit code (null: killed by a signal). */
  signalPart(part: string, signal: NodeJS.Signals, withinMs?: number): Promise<number | null>;
  /** Starts a part again, as it was started. */
  startPart(part: string): void;
  /** The directors' machines, and which of them holds the floating front address now (null: none). */
  directors: string[];
  frontHolder(): string | null;
  hostAddress(host: string): string;
  /** A part's log (storage-sa, director, controller, bmc-h1, agent-h1). */
  log(part: string): string;
  /** `ipmitool … chassis power status` from the controller's machine: 'on' | 'off' | an error text. */
  bmcPower(host: string): Promise<string>;
  stop(): void;
}

/** The running rig's cluster credentials: one rig at a time (its addresses are fixed). */
let credentials: { secret: string; dispatcher: Dispatcher } | null = null;

const BMC_USER = 'admin';
const BMC_PASSWORD = 'rig-bmc-secret';

function lanConf(name: string, address: string, chassis: string): string {
  return `name "${name}"
set_working_mc 0x20
  startlan 1
    addr ${address} 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${chassis}"
  user 2 true "${BMC_USER}" "${BMC_PASSWORD}" admin 10 none md2 md5 straight
`;
}

const EMU = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`;

export async function startRigCluster(opts: RigClusterOptions = {}): Promise<RigCluster> {
  const hosts = opts.hosts ?? [
    { name: 'h1', storage: 'array-a' as const },
    { name: 'h2', storage: 'array-b' as const },
  ];
  const names = hosts.map((h) => h.name);
  const ctlNames = opts.controllers ?? ['ctl'];
  const clustered = opts.controllers !== undefined;
  const etcdMachines = clustered ? ['e1', 'e2', 'e3'] : [];
  const dirNames = opts.directors ?? ['dir'];
  const vrrp = opts.directors !== undefined;
  const rig = createRig({ machines: [...names, 'sa', 'sb', ...dirNames, ...ctlNames, ...etcdMachines], bmcs: names, ...(vrrp ? { lan: dirNames } : {}) });
  let etcd: EtcdCluster | null = null;
  const dir = testDir('understudy-rig-');
  const logs = path.join(dir, 'logs');
  fs.mkdirSync(logs);
  const procs: ChildProcess[] = [];
  const stop = () => {
    for (const p of procs) {
      try {
        p.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
    etcd?.stop().catch(() => undefined);
    rig.destroy();
    credentials?.dispatcher.close().catch(() => undefined);
    credentials = null;
  };
  try {
    const a = (m: string) => rig.address(m);
    const passwordFile = path.join(dir, 'bmc-password');
    fs.writeFileSync(passwordFile, `${BMC_PASSWORD}\n`, { mode: 0o600 });
    const ipmi = opts.ipmi ?? { poll: '100ms', timeout: '5s' };
    const configFile = path.join(dir, 'understudy.yaml');
    const secret = randomBytes(24).toString('hex');
    fs.writeFileSync(path.join(dir, 'cluster-secret'), `${secret}\n`, { mode: 0o600 });
    const certs = path.join(dir, 'certs');
    if (clustered)
      etcd = await startEtcd(3, {
        addresses: etcdMachines.map(a),
        spawn: (i, argv, o) => rig.spawn(rig.ns(etcdMachines[i]!), argv, o),
      });
    const lease = opts.lease ?? { ttl: '3s', loop: '300ms', retry: '1s' };
    const frontHost = vrrp ? rig.lanFloating : a('dir');
    const doc = {
      cluster: {
        secret: { file: `${dir}/cluster-secret` },
        tls: { ca: `${certs}/ca.pem`, cert: `${certs}/{{part}}.pem`, key: `${certs}/{{part}}-key.pem` },
      },
      controller: clustered
        ? {
            listen: `${a(ctlNames[0]!)}:7070`,
            members: Object.fromEntries(ctlNames.map((n) => [n, `${a(n)}:7070`])),
            state: { etcd: { endpoints: etcd!.endpoints, prefix: '/understudy', ...lease }, dir: `${dir}/state` },
          }
        : { listen: `${a('ctl')}:7070`, state: `${dir}/state` },
      director: vrrp
        ? { listen: `${a(dirNames[0]!)}:7071`, members: Object.fromEntries(dirNames.map((n) => [n, `${a(n)}:7071`])) }
        : { listen: `${a('dir')}:7071` },
      storage: {
        'array-a': { path: `${dir}/array-a`, listen: `${a('sa')}:7100` },
        'array-b': { path: `${dir}/array-b`, listen: `${a('sb')}:7100` },
      },
      hosts: Object.fromEntries(
        hosts.map((h, i) => [
          h.name,
          {
            address: a(h.name),
            storage: h.storage,
            boot: i < 2,
            power: { ipmi: { address: rig.bmcAddress(h.name), user: BMC_USER, passwordFile, cipherSuite: 3, ...ipmi } },
          },
        ]),
      ),
      sites: {
        shop: {
          front: `${frontHost}:8080`,
          app: { command: ['node', `${ROOT}/examples/shop/server.js`], port: 3000, seed: `${ROOT}/examples/shop/seed` },
          primary: names[0],
          standby: names.slice(1),
          volume: { replication: opts.replication ?? 'sync' },
          transform: [{ file: 'config/site.json', set: { 'listen.host': '{{host.address}}', 'listen.port': '{{site.app.port}}' } }],
          health: { probe: { path: '/healthz', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } },
        },
      },
    };
    fs.writeFileSync(configFile, configYaml(doc, 'test/support/rig-cluster.ts (every part on its own machine)'));
    execFileSync(process.execPath, [BIN, 'certs', '-c', configFile, '--out', certs], { cwd: ROOT, stdio: 'ignore' });
    credentials = { secret, dispatcher: new Agent({ connect: { ca: fs.readFileSync(path.join(certs, 'ca.pem')) } }) };
    const token = randomBytes(16).toString('hex');
    // The controller's token goes to the parts `up` would give it to; hosts (started by their BMCs) never see it.
    const { UNDERSTUDY_TOKEN: _none, ...baseEnv } = process.env;
    const env = { ...baseEnv, UNDERSTUDY_LOG_LEVEL: 'warn', ...opts.env, UNDERSTUDY_TOKEN: token };
    const hostEnv = { ...baseEnv, UNDERSTUDY_LOG_LEVEL: 'warn', ...opts.env };
    const parts = new Map<string, { machine: string; args: string[]; proc: ChildProcess }>();
    const start = (machine: string, part: string, args: string[]) => {
      const out = fs.openSync(path.join(logs, `${part}.log`), 'a');
      const p = rig.spawn(rig.ns(machine), [process.execPath, BIN, ...args, '-c', configFile], { cwd: ROOT, env, stdio: ['ignore', out, out] });
      fs.closeSync(out);
      procs.push(p);
      parts.set(part, { machine, args, proc: p });
      return p;
    };
    start('sa', 'storage-sa', ['storage', '--name', 'array-a']);
    start('sb', 'storage-sb', ['storage', '--name', 'array-b']);
    if (vrrp) {
      for (const [k, n] of dirNames.entries()) {
        start(n, `director-${n}`, ['director', '--name', n]);
        // The director's readiness, as keepalived reads it (examples/keepalived/director-ready.sh).
        const ready = path.join(dir, `ready-${n}`);
        procs.push(
          rig.spawn(rig.ns(n), [`${ROOT}/examples/keepalived/director-ready.sh`, `https://${a(n)}:7071`, `${dir}/cluster-secret`, ready, `${certs}/ca.pem`], {
            stdio: 'ignore',
          }),
        );
        const conf = path.join(dir, `keepalived-${n}.conf`);
        fs.writeFileSync(
          conf,
          keepalivedConf({
            name: n,
            self: rig.lanAddress(n),
            peers: dirNames.filter((x) => x !== n).map(rig.lanAddress),
            vip: rig.lanFloating,
            priority: 100 - k * 10,
            ready,
          }),
        );
        const out = fs.openSync(path.join(logs, `keepalived-${n}.log`), 'a');
        procs.push(
          rig.spawn(
            rig.ns(n),
            [
              'keepalived',
              '--dont-fork',
              '--log-console',
              '--vrrp',
              '-f',
              conf,
              '-p',
              path.join(dir, `keepalived-${n}.pid`),
              '-r',
              path.join(dir, `vrrp-${n}.pid`),
            ],
            { stdio: ['ignore', out, out] },
          ),
        );
        fs.closeSync(out);
      }
    } else start('dir', 'director', ['director']);
    // One BMC per host: ipmi_sim on the management network, its chassis the host's namespace.
    for (const h of names) {
      const boot = path.join(dir, `boot-${h}.sh`);
      fs.writeFileSync(boot, `#!/bin/sh\ncd ${ROOT}\nexec ${process.execPath} ${BIN} agent --host ${h} -c ${configFile} >>${logs}/agent-${h}.log 2>&1\n`, {
        mode: 0o755,
      });
      const bmcDir = path.join(dir, `bmc-${h}`);
      fs.mkdirSync(bmcDir);
      fs.writeFileSync(path.join(bmcDir, 'lan.conf'), lanConf(h, rig.bmcAddress(h), `${ROOT}/test/support/bmc-chassis.sh ${rig.ns(h)} ${boot}`));
      fs.writeFileSync(path.join(bmcDir, 'emu.cmd'), EMU);
      const out = fs.openSync(path.join(logs, `bmc-${h}.log`), 'a');
      procs.push(
        rig.spawn(rig.bmcNs(h), ['ipmi_sim', '-n', '-c', path.join(bmcDir, 'lan.conf'), '-f', path.join(bmcDir, 'emu.cmd'), '-s', bmcDir], {
          env: hostEnv,
          stdio: ['ignore', out, out],
        }),
      );
      fs.closeSync(out);
    }
    for (const [m, port] of [['sa', 7100] as const, ['sb', 7100] as const, ...dirNames.map((n) => [n, 7071] as const)]) {
      await waitUntil(`${m} on ${a(m)}:${port}`, async () => (await rigCall(`http://${a(m)}:${port}/healthz`, { timeoutMs: 500 })).status === 200, 20_000, 100);
    }
    if (clustered) for (const n of ctlNames) start(n, `controller-${n}`, ['controller', '--name', n]);
    else start('ctl', 'controller', ['controller']);
    const callTo = async (n: string, p: string, init: { method?: string; body?: unknown; timeoutMs?: number; token?: null } = {}): Promise<HttpAnswer> => {
      const res = await request(`https://${a(n)}:7070${p}`, {
        dispatcher: credentials!.dispatcher,
        method: (init.method ?? (init.body === undefined ? 'GET' : 'POST')) as 'GET',
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        headers: {
          ...(init.token === null ? {} : { authorization: `Bearer ${token}` }),
          ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        headersTimeout: init.timeoutMs ?? 10_000,
        bodyTimeout: init.timeoutMs ?? 10_000,
      });
      return { status: res.statusCode, servedBy: null, body: jsonOrText(await res.body.text()), at: Date.now() };
    };
    const leader = async (): Promise<string | null> => {
      for (const n of ctlNames) {
        try {
          const r = await callTo(n, '/v1/status', { timeoutMs: 2000 });
          if (r.status === 200 && (r.body as { controller?: { role?: string } }).controller?.role === 'leader') return n;
        } catch {
          /* not this one */
        }
      }
      return null;
    };
    const cluster: RigCluster = {
      rig,
      dir,
      configFile,
      front: `http://${frontHost}:8080`,
      directors: dirNames,
      apiToken: token,
      killPart: async (part) => {
        const p = parts.get(part)?.proc;
        if (!p) throw new Error(`no part ${part} in this rig`);
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await exited;
      },
      signalPart: async (part, signal, withinMs = 15_000) => {
        const p = parts.get(part)?.proc;
        if (!p) throw new Error(`no part ${part} in this rig`);
        if (p.exitCode !== null || p.signalCode !== null) return p.exitCode;
        const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
        p.kill(signal);
        const timer = new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`${part} did not exit within ${withinMs} ms of ${signal}`)), withinMs).unref(),
        );
        return Promise.race([exited, timer]);
      },
      startPart: (part) => {
        const known = parts.get(part);
        if (!known) throw new Error(`no part ${part} in this rig`);
        start(known.machine, part, known.args);
      },
      frontHolder: () => dirNames.find((n) => holdsAddress(rig.ns(n), rig.lanFloating)) ?? null,
      api: `https://${a(ctlNames[0]!)}:7070`,
      call: async (p, init = {}) => {
        if (!clustered) return callTo('ctl', p, init);
        const n = await leader();
        if (n !== null) return callTo(n, p, init);
        let last: unknown = null;
        for (const m of ctlNames) {
          try {
            return await callTo(m, p, init);
          } catch (e) {
            last = e;
          }
        }
        throw last as Error;
      },
      controllers: ctlNames,
      callTo,
      leader,
      etcd,
      hostAddress: (h) => a(h),
      log: (part) => {
        try {
          return fs.readFileSync(path.join(logs, `${part}.log`), 'utf8');
        } catch {
          return '';
        }
      },
      bmcPower: async (h) => {
        const { execFileSync } = await import('node:child_process');
        try {
          const out = execFileSync(
            'ip',
            [
              'netns',
              'exec',
              rig.ns(ctlNames[0]!),
              'ipmitool',
              '-I',
              'lanplus',
              '-H',
              rig.bmcAddress(h),
              '-U',
              BMC_USER,
              '-f',
              passwordFile,
              '-C',
              '3',
              '-N',
              '1',
              '-R',
              '1',
              'chassis',
              'power',
              'status',
            ],
            { encoding: 'utf8' },
          );
          return /is on/.test(out) ? 'on' : /is off/.test(out) ? 'off' : out;
        } catch (e) {
          return `error: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`;
        }
      },
      stop,
    };
    if (clustered) await waitUntil('a leading controller', async () => (await leader()) !== null, 30_000, 100);
    else await waitUntil('the controller', async () => (await cluster.call('/healthz', { timeoutMs: 500 })).status === 200, 30_000, 100);
    return cluster;
  } catch (e) {
    const tail = [
      ...(vrrp ? dirNames.flatMap((n) => [`director-${n}`, `keepalived-${n}`]) : []),
      ...(clustered ? ctlNames.map((n) => `controller-${n}`) : ['controller']),
      'director',
      'storage-sa',
      'storage-sb',
      ...names.map((h) => `agent-${h}`),
      ...names.map((h) => `bmc-${h}`),
    ]
      .map((p) => {
        try {
          return `--- ${p}\n${fs.readFileSync(path.join(logs, `${p}.log`), 'utf8').slice(-1500)}`;
        } catch {
          return '';
        }
      })
      .join('\n');
    stop();
    throw new Error(`${(e as Error).message}\n${tail}`, { cause: e });
  }
}

export { sleep };

/** GET of the controller's API through the rig (with its token); anything but 200 throws with the answer. */
export async function rigApi<T>(c: RigCluster, p: string): Promise<T> {
  const r = await c.call(p);
  if (r.status !== 200) throw new Error(`${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as T;
}

/** `GET /v1/status` of the rig's controller. */
export function rigStatus(c: RigCluster): Promise<Status> {
  return rigApi<Status>(c, '/v1/status');
}

/** Waits until the rig's site serves (from `host`, when given) with replication streaming; returns that status. */
export function waitRigServing(c: RigCluster, host?: string): Promise<Status> {
  return waitServing(() => rigStatus(c), host ? { host } : {}, 40_000, 100);
}

/** A call to a part's endpoint on the running rig over TLS with the cluster secret (an `http://` URL is called as `https://`). */
export async function rigCall(
  url: string,
  init: { timeoutMs?: number; method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<HttpAnswer> {
  if (!credentials) throw new Error('no rig is running');
  const timeoutMs = init.timeoutMs ?? 10_000;
  const res = await request(url.replace(/^http:/, 'https:'), {
    dispatcher: credentials.dispatcher,
    method: (init.method ?? (init.body === undefined ? 'GET' : 'POST')) as 'GET',
    headers: { authorization: `Bearer ${credentials.secret}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.statusCode, servedBy: null, body: jsonOrText(await res.body.text()), at: Date.now() };
}

/** GET of any part's URL on the rig (with the cluster secret, over TLS); anything but 200 throws with the answer. */
export async function rigGet<T>(url: string): Promise<T> {
  const r = await rigCall(url);
  if (r.status !== 200) throw new Error(`${url}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as T;
}

/** Whether a namespace holds `address` on one of its interfaces. */
function holdsAddress(ns: string, address: string): boolean {
  try {
    return execFileSync('ip', ['-n', ns, '-4', '-o', 'addr', 'show'], { encoding: 'utf8' }).includes(` ${address}/`);
  } catch {
    return false;
  }
}

/**
 * keepalived for one director: a VRRP instance (version 3, adverts every 200 ms, by
 * unicast to the other directors) holding the front's floating address on the LAN,
 * only while the director answers `/v1/ready` (it runs and has every site's route),
 * as director-ready.sh writes it to a file that keepalived reads on every change
 * (track_file). No preemption: a director that comes back does not take the front
 * from one serving it.
 */
function keepalivedConf(o: { name: string; self: string; peers: string[]; vip: string; priority: number; ready: string }): string {
  return `global_defs {
  router_id ${o.name}
  script_user root
  enable_script_security
  vrrp_version 3
}
track_file director_ready {
  file "${o.ready}"
  weight 0
  init_file 1 overwrite
}
vrrp_instance front {
  state BACKUP
  interface eth1
  virtual_router_id 77
  priority ${o.priority}
  advert_int 0.2
  nopreempt
  unicast_src_ip ${o.self}
  unicast_peer {
${o.peers.map((p) => `    ${p}`).join('\n')}
  }
  virtual_ipaddress {
    ${o.vip}/24 dev eth1
  }
  track_file {
    director_ready
  }
}
`;
}
