import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UnderstudyConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { StateStore } from '../state/state-store.ts';
import { isGroupAlive, isProcessAlive, isRecordedGroupAlive, killGroup, listProcesses, processIdentity } from './process-group.ts';
import type { RelayDriver, RelayStatus } from './relay.ts';
import { handoffEnv } from '../config/handoff.ts';

/**
 * The controller's token stays with the controller: hosts and their apps never see it
 * (UNDERSTUDY_TOKEN, or the variable `controller.token` names). The cluster secret does
 * go to the agent, which needs it; the agent keeps it from its apps (app-process.ts).
 */
function withoutSecrets(env: NodeJS.ProcessEnv, config: UnderstudyConfig): NodeJS.ProcessEnv {
  const { UNDERSTUDY_TOKEN: _token, ...rest } = env;
  const tokenEnv = config.controller.token && 'env' in config.controller.token ? config.controller.token.env : null;
  if (tokenEnv) delete rest[tokenEnv];
  return rest;
}

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/understudy.js');

/** How long `off` waits for every process of the host to be gone before it reports the fence unconfirmed. */
export const CONFIRM_TIMEOUT_MS = 3000;

/** What `reclaim` did with a host an earlier run left behind. */
export interface ReclaimedHost {
  host: string;
  action: 'adopted' | 'powered-off' | 'recorded-off' | 'unconfirmed';
  /** The host's process group (its agent's pid). */
  pid: number | null;
  /** Why, for the operator. */
  reason: string;
}

/**
 * The embedded relay: a host is its agent's process group. `on` spawns
 * `understudy agent --host NAME` as the leader of a new group (the agent starts
 * the site's apps inside that group); `off` is SIGKILL of the whole group,
 * confirmed by seeing no live member left. The group id is recorded in the state
 * store with its leader's identity (processIdentity), so a restarted controller (or
 * `up` shutting down, or the next `up`) finds the hosts again, and a group number
 * that another process took since is never mistaken for a host nor killed.
 */
export class LocalRelay implements RelayDriver {
  constructor(
    private readonly config: UnderstudyConfig,
    private readonly store: StateStore,
    private readonly logDir: string,
  ) {
    fs.mkdirSync(logDir, { recursive: true });
  }

  status(host: string): RelayStatus {
    const rec = this.store.getRelay(host);
    if (rec?.pgid && isRecordedGroupAlive(rec.pgid, rec.identity)) return { host, power: 'on', pid: rec.pgid };
    return { host, power: 'off', pid: null };
  }

  async on(host: string): Promise<RelayStatus> {
    if (!this.config.hosts[host]) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: see hosts: in ${this.config.file}`);
    const current = this.status(host);
    if (current.power === 'on') return current;
    const log = fs.openSync(path.join(this.logDir, `${host}.log`), 'a');
    const child = spawn(process.execPath, [BIN, 'agent', '--host', host, '-c', this.config.file], {
      detached: true,
      cwd: this.config.baseDir,
      stdio: ['ignore', log, log],
      env: { ...withoutSecrets(process.env, this.config), ...handoffEnv(this.config) },
    });
    fs.closeSync(log);
    const pid = child.pid;
    if (pid === undefined) throw new UnderstudyError('US_INTERNAL', `could not start the agent of host ${host}: see ${this.logDir}/${host}.log`);
    // Reaped by us while we live; the record lets anyone find the group later.
    child.on('error', () => undefined);
    child.unref();
    this.store.putRelay(host, 'on', pid, processIdentity(pid));
    return { host, power: 'on', pid };
  }

  async off(host: string): Promise<RelayStatus> {
    const rec = this.store.getRelay(host);
    const pgid = rec?.pgid ?? null;
    // A group number that is no longer the host's (reused) is off for this host: never kill it.
    if (pgid !== null && isRecordedGroupAlive(pgid, rec?.identity ?? null)) {
      killGroup(pgid, 'SIGKILL');
      const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
      while (isGroupAlive(pgid)) {
        if (Date.now() > deadline) {
          throw new UnderstudyError(
            'US_FENCE_UNCONFIRMED',
            `host ${host}: process group ${pgid} is still alive ${CONFIRM_TIMEOUT_MS} ms after SIGKILL; check it by hand (ps -g ${pgid}) and use failover --force only once it is gone`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    this.store.putRelay(host, 'off', null);
    return { host, power: 'off', pid: null };
  }

  /**
   * For an embedded `up` that starts where an earlier run left hosts running (that
   * `up` was killed, or died): every running host is taken back or powered off, so
   * none serves unseen. Call it while no controller runs.
   *
   * - a recorded host of the config whose group is still its own, agent alive: adopted
   *   (left running; the controller goes on with it from the state store);
   * - a recorded host whose agent is gone while other processes of its group run (an
   *   app nobody can stop any more), or a host the config no longer has: powered off;
   * - a record whose group number now belongs to another process: recorded off;
   * - an agent of this config (same file, same working directory) that no record
   *   names: powered off (its whole group when it leads one, else SIGTERM to it).
   */
  async reclaim(): Promise<ReclaimedHost[]> {
    const out: ReclaimedHost[] = [];
    const powerOff = async (host: string, pid: number | null, reason: string): Promise<void> => {
      try {
        await this.off(host);
        out.push({ host, action: 'powered-off', pid, reason });
      } catch (e) {
        out.push({ host, action: 'unconfirmed', pid, reason: `${reason}; ${(e as Error).message}` });
      }
    };
    const recorded = new Set<number>();
    for (const rec of this.store.listRelays()) {
      if (rec.pgid === null) continue;
      recorded.add(rec.pgid);
      if (!isRecordedGroupAlive(rec.pgid, rec.identity)) {
        const now = processIdentity(rec.pgid);
        if (now !== null && rec.identity !== null && now !== rec.identity) {
          // The number leads another process now: forget it, so that nothing ever signals it.
          this.store.putRelay(rec.host, 'off', null);
          out.push({ host: rec.host, action: 'recorded-off', pid: rec.pgid, reason: `process group ${rec.pgid} belongs to another process now` });
        }
        continue;
      }
      if (!this.config.hosts[rec.host]) {
        await powerOff(rec.host, rec.pgid, `${rec.host} is not in ${this.config.file} any more`);
        this.store.forgetRelay(rec.host);
      } else if (!isProcessAlive(rec.pgid)) {
        await powerOff(rec.host, rec.pgid, `its agent is gone but processes of its group still run`);
      } else {
        out.push({ host: rec.host, action: 'adopted', pid: rec.pgid, reason: 'its agent still runs' });
      }
    }
    for (const p of this.unrecordedAgents(recorded)) {
      if (p.pgid === p.pid) killGroup(p.pid, 'SIGKILL');
      else
        try {
          process.kill(p.pid, 'SIGTERM');
        } catch {
          /* gone already */
        }
      const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
      const gone = () => (p.pgid === p.pid ? !isRecordedGroupAlive(p.pid, null) : !isProcessAlive(p.pid));
      while (!gone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      out.push({ host: p.host, action: gone() ? 'powered-off' : 'unconfirmed', pid: p.pid, reason: `an agent of ${p.host} ran with no relay record` });
    }
    return out;
  }

  /** Agents started from this config (same file, same working directory) whose group no relay record names. */
  private unrecordedAgents(recorded: Set<number>): { pid: number; pgid: number; host: string }[] {
    const file = path.resolve(this.config.file);
    const found: { pid: number; pgid: number; host: string }[] = [];
    for (const p of listProcesses()) {
      if (p.pid === process.pid || recorded.has(p.pgid) || p.cwd !== path.resolve(this.config.baseDir)) continue;
      const at = p.argv.indexOf('agent');
      if (at < 0) continue;
      const args = p.argv.slice(at + 1);
      const value = (...names: string[]): string | undefined => {
        const i = args.findIndex((a) => names.includes(a));
        return i >= 0 ? args[i + 1] : undefined;
      };
      const host = value('--host');
      const cfg = value('-c', '--config');
      if (!host || !cfg || path.resolve(p.cwd, cfg) !== file) continue;
      found.push({ pid: p.pid, pgid: p.pgid, host });
    }
    return found;
  }
}
