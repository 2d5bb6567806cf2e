import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/**
 * Test support: machines made of Linux network namespaces (needs root, iproute2
 * and nftables). Every machine is a namespace on its own /24 behind one router
 * namespace, so that no two machines share a subnet and every message between
 * them is routed:
 *
 *   machine i  (PREFIX-NAME, eth0 = NET.i.2/24, default via NET.i.1)
 *        │ veth
 *   router     (PREFIX-r, forwards; nftables table `inet PREFIX` for one-way cuts)
 *        │ bridge PREFIXbr = NET.200.1/24: the management network; BMC j = PREFIX-bmc-NAME at NET.200.(10+j)
 *        │ veth PREFIXc0: the test process (root namespace) at NET.250.2, route NET.0.0/16 via the router
 *
 * Usage:
 *   const rig = createRig({ machines: ['h1', 'h2', 'ctl'], bmcs: ['h1', 'h2'] });
 *   t.after(() => rig.destroy());
 *   rig.address('h1')               // '10.77.1.2'
 *   rig.spawn('h1', ['node', …])    // a process inside machine h1
 *   rig.linkDown('h1') / linkUp('h1')          // h1's cable pulled / plugged back
 *   rig.drop('h1', 'ctl') / rig.heal()          // packets from h1 to ctl dropped (one direction)
 *
 * `destroy()` kills every process in every namespace of the rig and deletes the
 * namespaces (their links and routes go with them); `createRig` first sweeps
 * namespaces left by an earlier run that died. Namespaces, links and nftables
 * names all start with the prefix, so that rigs with other prefixes never collide.
 */

export interface RigOptions {
  machines: string[];
  /** Machines that get a BMC namespace on the management network. */
  bmcs?: string[];
  /** Name prefix of namespaces and links. @default 'usm' */
  prefix?: string;
  /** First two octets of the rig's addresses. @default '10.77' */
  net?: string;
  /**
   * Machines that also share one LAN (a second interface, eth1, on a bridge in the
   * router: NET.201.0/24), as two directors sharing a floating front address by VRRP.
   * They may bind an address they do not hold yet (ip_nonlocal_bind).
   */
  lan?: string[];
}

export interface Rig {
  prefix: string;
  /** A machine's namespace name (`ip netns exec NAME …`). */
  ns(machine: string): string;
  /** A machine's address. */
  address(machine: string): string;
  /** The namespace of a machine's BMC. */
  bmcNs(machine: string): string;
  /** The address of a machine's BMC on the management network. */
  bmcAddress(machine: string): string;
  /** Runs argv inside a machine's (or BMC's) namespace; the rig kills it on destroy. */
  spawn(nsName: string, argv: string[], opts?: SpawnOptions): ChildProcess;
  /** Pids of every process inside a namespace. */
  pids(nsName: string): number[];
  /** SIGKILL every process inside a namespace. */
  killAll(nsName: string): void;
  linkDown(machine: string): void;
  linkUp(machine: string): void;
  /** A machine's address on the shared LAN (eth1), and a free address on it for a floating one. */
  lanAddress(machine: string): string;
  lanFloating: string;
  /** Drops every packet the router forwards from `from` to `to` (machine names, or 'mgmt' for the management network). */
  drop(from: string, to: string): void;
  /** Removes every drop rule. */
  heal(): void;
  destroy(): void;
}

function run(argv: string[], input?: string): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
}

function tryRun(argv: string[]): void {
  try {
    run(argv);
  } catch {
    /* already gone */
  }
}

function nsPids(ns: string): number[] {
  try {
    return run(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function killNs(ns: string): void {
  for (let round = 0; round < 50; round++) {
    const pids = nsPids(ns);
    if (pids.length === 0) return;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    execFileSync('sleep', ['0.02']);
  }
}

/** Kills and deletes every namespace whose name starts with `prefix-` (left by a run that died). */
export function sweep(prefix = 'usm'): void {
  let names: string[] = [];
  try {
    names = run(['ip', 'netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    /* no namespaces */
  }
  for (const n of names) killNs(n);
  for (const n of names) tryRun(['ip', 'netns', 'del', n]);
  tryRun(['ip', 'link', 'del', `${prefix}c0`]);
}

export function createRig(opts: RigOptions): Rig {
  const prefix = opts.prefix ?? 'usm';
  const net = opts.net ?? '10.77';
  const bmcs = opts.bmcs ?? [];
  if (opts.machines.length > 190) throw new Error('at most 190 machines per rig');
  sweep(prefix);
  const router = `${prefix}-r`;
  const ns = (m: string) => {
    if (!opts.machines.includes(m)) throw new Error(`no machine ${m} in this rig`);
    return `${prefix}-${m}`;
  };
  const index = (m: string) => opts.machines.indexOf(m) + 1;
  const bmcNs = (m: string) => `${prefix}-bmc-${m}`;
  const bmcIndex = (m: string) => {
    const i = bmcs.indexOf(m);
    if (i < 0) throw new Error(`machine ${m} has no BMC in this rig`);
    return i + 10;
  };
  const children = new Set<ChildProcess>();
  const allNs = [router, ...opts.machines.map(ns), ...bmcs.map(bmcNs)];
  const rig: Rig = {
    prefix,
    ns,
    address: (m) => `${net}.${index(m)}.2`,
    bmcNs,
    bmcAddress: (m) => `${net}.200.${bmcIndex(m)}`,
    lanAddress: (m) => {
      const k = (opts.lan ?? []).indexOf(m);
      if (k < 0) throw new Error(`machine ${m} is not on the rig's LAN`);
      return `${net}.201.${10 + k}`;
    },
    lanFloating: `${net}.201.100`,
    spawn(nsName, argv, o = {}) {
      const child = spawn('ip', ['netns', 'exec', nsName, ...argv], { stdio: 'ignore', ...o });
      children.add(child);
      child.once('exit', () => children.delete(child));
      child.on('error', () => undefined);
      return child;
    },
    pids: nsPids,
    killAll: killNs,
    linkDown(m) {
      run(['ip', '-n', router, 'link', 'set', `${prefix}r${index(m)}`, 'down']);
    },
    linkUp(m) {
      run(['ip', '-n', router, 'link', 'set', `${prefix}r${index(m)}`, 'up']);
    },
    drop(from, to) {
      const addr = (m: string) => (m === 'mgmt' ? `${net}.200.0/24` : `${net}.${index(m)}.2`);
      run(['ip', 'netns', 'exec', router, 'nft', 'add', 'rule', 'inet', prefix, 'cut', 'ip', 'saddr', addr(from), 'ip', 'daddr', addr(to), 'drop']);
    },
    heal() {
      run(['ip', 'netns', 'exec', router, 'nft', 'flush', 'chain', 'inet', prefix, 'cut']);
    },
    destroy() {
      for (const c of children) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
      for (const n of allNs) killNs(n);
      for (const n of allNs) tryRun(['ip', 'netns', 'del', n]);
      tryRun(['ip', 'link', 'del', `${prefix}c0`]);
    },
  };
  try {
    for (const n of allNs) {
      run(['ip', 'netns', 'add', n]);
      run(['ip', '-n', n, 'link', 'set', 'lo', 'up']);
    }
    run(['ip', 'netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    for (const m of opts.machines) {
      const i = index(m);
      const r = `${prefix}r${i}`;
      run(['ip', '-n', router, 'link', 'add', r, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(m)]);
      run(['ip', '-n', router, 'addr', 'add', `${net}.${i}.1/24`, 'dev', r]);
      run(['ip', '-n', router, 'link', 'set', r, 'up']);
      run(['ip', '-n', ns(m), 'addr', 'add', `${net}.${i}.2/24`, 'dev', 'eth0']);
      run(['ip', '-n', ns(m), 'link', 'set', 'eth0', 'up']);
      run(['ip', '-n', ns(m), 'route', 'add', 'default', 'via', `${net}.${i}.1`]);
    }
    // The management network: a bridge in the router, one veth per BMC.
    const br = `${prefix}br`;
    run(['ip', '-n', router, 'link', 'add', br, 'type', 'bridge']);
    run(['ip', '-n', router, 'addr', 'add', `${net}.200.1/24`, 'dev', br]);
    run(['ip', '-n', router, 'link', 'set', br, 'up']);
    for (const m of bmcs) {
      const j = bmcIndex(m);
      const b = `${prefix}b${j}`;
      run(['ip', '-n', router, 'link', 'add', b, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', bmcNs(m)]);
      run(['ip', '-n', router, 'link', 'set', b, 'master', br]);
      run(['ip', '-n', router, 'link', 'set', b, 'up']);
      run(['ip', '-n', bmcNs(m), 'addr', 'add', `${net}.200.${j}/24`, 'dev', 'eth0']);
      run(['ip', '-n', bmcNs(m), 'link', 'set', 'eth0', 'up']);
      run(['ip', '-n', bmcNs(m), 'route', 'add', 'default', 'via', `${net}.200.1`]);
    }
    // The shared LAN: a bridge in the router, eth1 of each machine on it.
    if (opts.lan && opts.lan.length > 0) {
      const lan = `${prefix}lan`;
      run(['ip', '-n', router, 'link', 'add', lan, 'type', 'bridge']);
      run(['ip', '-n', router, 'addr', 'add', `${net}.201.1/24`, 'dev', lan]);
      run(['ip', '-n', router, 'link', 'set', lan, 'up']);
      // Answers from a floating address leave by eth0 (the default route): no reverse-path check.
      run(['ip', 'netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0']);
      // A floating address that moves is learnt from its holder's gratuitous ARP at once (Linux otherwise keeps an entry 1 s: locktime).
      run(['ip', 'netns', 'exec', router, 'sysctl', '-qw', `net.ipv4.neigh.${lan}.locktime=0`]);
      opts.lan.forEach((m, k) => {
        const l = `${prefix}l${index(m)}`;
        run(['ip', '-n', router, 'link', 'add', l, 'type', 'veth', 'peer', 'name', 'eth1', 'netns', ns(m)]);
        run(['ip', '-n', router, 'link', 'set', l, 'master', lan]);
        run(['ip', '-n', router, 'link', 'set', l, 'up']);
        run(['ip', '-n', ns(m), 'addr', 'add', `${net}.201.${10 + k}/24`, 'dev', 'eth1']);
        run(['ip', '-n', ns(m), 'link', 'set', 'eth1', 'up']);
        run(['ip', 'netns', 'exec', ns(m), 'sysctl', '-qw', 'net.ipv4.ip_nonlocal_bind=1']);
        run(['ip', 'netns', 'exec', ns(m), 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0']);
      });
    }
    // The test process (root namespace) as a client of the rig.
    const c = `${prefix}c0`;
    run(['ip', 'link', 'add', c, 'type', 'veth', 'peer', 'name', `${prefix}c1`, 'netns', router]);
    run(['ip', 'addr', 'add', `${net}.250.2/24`, 'dev', c]);
    run(['ip', 'link', 'set', c, 'up']);
    run(['ip', '-n', router, 'addr', 'add', `${net}.250.1/24`, 'dev', `${prefix}c1`]);
    run(['ip', '-n', router, 'link', 'set', `${prefix}c1`, 'up']);
    run(['ip', 'route', 'add', `${net}.0.0/16`, 'via', `${net}.250.1`]);
    run(['ip', 'netns', 'exec', router, 'nft', '-f', '-'], `table inet ${prefix} {\n chain cut { type filter hook forward priority 0; policy accept; }\n}\n`);
  } catch (e) {
    rig.destroy();
    const err = e as { stderr?: string; message: string };
    throw new Error(`could not build the rig: ${err.stderr ?? err.message}`, { cause: e });
  }
  return rig;
}
