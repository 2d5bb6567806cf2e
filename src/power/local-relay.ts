import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UnderstudyConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { StateStore } from '../state/state-store.ts';
import { isGroupAlive, killGroup } from './process-group.ts';
import type { RelayDriver, RelayStatus } from './relay.ts';

/** The controller's token stays with the controller: hosts and their apps never see it. */
function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { UNDERSTUDY_TOKEN: _token, ...rest } = env;
  return rest;
}

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/understudy.js');

/** How long `off` waits for every process of the host to be gone before it reports the fence unconfirmed. */
const CONFIRM_TIMEOUT_MS = 3000;

/**
 * The embedded relay: a host is its agent's process group. `on` spawns
 * `understudy agent --host NAME` as the leader of a new group (the agent starts
 * the site's apps inside that group); `off` is SIGKILL of the whole group,
 * confirmed by seeing no live member left. The group id is recorded in the state
 * store, so a restarted controller (or `up` shutting down) finds the hosts again.
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
    if (rec?.pgid && isGroupAlive(rec.pgid)) return { host, power: 'on', pid: rec.pgid };
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
      env: withoutSecrets(process.env),
    });
    fs.closeSync(log);
    const pid = child.pid;
    if (pid === undefined) throw new UnderstudyError('US_INTERNAL', `could not start the agent of host ${host}: see ${this.logDir}/${host}.log`);
    // Reaped by us while we live; the record lets anyone find the group later.
    child.on('error', () => undefined);
    child.unref();
    this.store.putRelay(host, 'on', pid);
    return { host, power: 'on', pid };
  }

  async off(host: string): Promise<RelayStatus> {
    const rec = this.store.getRelay(host);
    const pgid = rec?.pgid ?? null;
    if (pgid !== null) {
      killGroup(pgid, 'SIGKILL');
      const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
      while (isGroupAlive(pgid)) {
        if (Date.now() > deadline) {
          throw new UnderstudyError('US_FENCE_UNCONFIRMED', `host ${host}: process group ${pgid} is still alive ${CONFIRM_TIMEOUT_MS} ms after SIGKILL; check it by hand (ps -g ${pgid}) and use failover --force only once it is gone`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    this.store.putRelay(host, 'off', null);
    return { host, power: 'off', pid: null };
  }
}
