import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { claimSlot } from './slots.ts';

/**
 * A real etcd cluster for tests (Debian's `etcd-server`, which .ci/run installs): three
 * members on 127.0.0.1, client and peer ports from a test slot this process holds, data
 * in a temporary directory. Members can be killed (SIGKILL), paused (SIGSTOP: a member
 * that answers nothing, as one cut off by the network does) and started again on their
 * data. `stop()` kills every member and removes the directory; it also runs when the
 * test process exits, so nothing is left running when a test fails.
 */
export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess | null;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Every member's client URL. */
  endpoints: string[];
  kill(i: number): Promise<void>;
  pause(i: number): void;
  resume(i: number): void;
  /** The index of the member that is the cluster's raft leader now (null: none answers as leader). */
  leader(): Promise<number | null>;
  /** Starts a killed member again on its data (it rejoins the cluster). */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

const started = new Set<EtcdCluster>();
let hooked = false;

export function hasEtcd(): boolean {
  return fs.existsSync('/usr/bin/etcd');
}

export interface EtcdPlacement {
  /** Each member's address (one per member): machines of a rig (machines.ts). @default 127.0.0.1 with ports from the test slot */
  addresses: string[];
  /** Starts a member's process on its machine (rig.spawn in the member's namespace). */
  spawn: (i: number, argv: string[], opts: SpawnOptions) => ChildProcess;
}

export async function startEtcd(size = 3, placement?: EtcdPlacement): Promise<EtcdCluster> {
  const base = 20000 + claimSlot() * 100;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-etcd-'));
  const members: EtcdMember[] = Array.from({ length: size }, (_, i) => ({
    name: `m${i + 1}`,
    clientUrl: placement ? `http://${placement.addresses[i]}:2379` : `http://127.0.0.1:${base + i * 2}`,
    peerUrl: placement ? `http://${placement.addresses[i]}:2380` : `http://127.0.0.1:${base + i * 2 + 1}`,
    dataDir: path.join(dir, `m${i + 1}`),
    proc: null,
  }));
  const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const launch = (m: EtcdMember, state: 'new' | 'existing'): void => {
    const log = fs.openSync(path.join(dir, `${m.name}.log`), 'a');
    const argv = [
      '/usr/bin/etcd',
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--listen-client-urls',
      m.clientUrl,
      '--advertise-client-urls',
      m.clientUrl,
      '--listen-peer-urls',
      m.peerUrl,
      '--initial-advertise-peer-urls',
      m.peerUrl,
      '--initial-cluster',
      initial,
      '--initial-cluster-state',
      state,
      '--initial-cluster-token',
      path.basename(dir),
      // Test timings: a leader election within about half a second.
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
    ];
    const opts: SpawnOptions = { stdio: ['ignore', log, log] };
    m.proc = placement ? placement.spawn(members.indexOf(m), argv, opts) : spawn(argv[0]!, argv.slice(1), opts);
    fs.closeSync(log);
  };
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    async kill(i) {
      const p = members[i]!.proc;
      members[i]!.proc = null;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    },
    async leader() {
      for (let i = 0; i < members.length; i++) {
        if (!members[i]!.proc) continue;
        try {
          const res = await fetch(`${members[i]!.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
          const st = (await res.json()) as { header?: { member_id?: string }; leader?: string };
          if (st.leader !== undefined && st.leader === st.header?.member_id) return i;
        } catch {
          /* not this one */
        }
      }
      return null;
    },
    pause(i) {
      members[i]!.proc?.kill('SIGSTOP');
    },
    resume(i) {
      members[i]!.proc?.kill('SIGCONT');
    },
    async restart(i) {
      launch(members[i]!, 'existing');
      await healthy([members[i]!.clientUrl], 15_000);
    },
    async stop() {
      started.delete(cluster);
      for (let i = 0; i < members.length; i++) {
        cluster.resume(i);
        await cluster.kill(i);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  started.add(cluster);
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const c of started) {
        for (const m of c.members) {
          try {
            m.proc?.kill('SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    });
  }
  for (const m of members) launch(m, 'new');
  try {
    await healthy(cluster.endpoints, 20_000);
  } catch (e) {
    const logs = members.map((m) => `${m.name}: ${tail(path.join(dir, `${m.name}.log`))}`).join('\n');
    await cluster.stop();
    throw new Error(`${(e as Error).message}\n${logs}`, { cause: e });
  }
  return cluster;
}

/** Waits until every endpoint answers a linearizable read (the cluster has a leader and quorum). */
async function healthy(endpoints: string[], withinMs: number): Promise<void> {
  const until = Date.now() + withinMs;
  for (const url of endpoints) {
    for (;;) {
      try {
        const res = await fetch(`${url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: 'aGVhbHRo' }), signal: AbortSignal.timeout(1000) });
        if (res.ok) break;
      } catch {
        /* not yet */
      }
      if (Date.now() > until) throw new Error(`etcd at ${url} did not become healthy within ${withinMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}
