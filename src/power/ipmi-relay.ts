import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { IpmiPower, UnderstudyConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { StateStore } from '../state/state-store.ts';
import type { RelayDriver, RelayStatus } from './relay.ts';

/** How long one ipmitool call may take (it retries once inside, `-R 1`). */
const CALL_TIMEOUT_MS = 3000;

export interface IpmiCallResult {
  ok: boolean;
  out: string;
}

/** Runs `ipmitool -I lanplus … ARGS` against a BMC; the password goes by file (`-f`), never on the command line. */
export function ipmitool(bmc: IpmiPower, args: string[], timeoutMs = CALL_TIMEOUT_MS): Promise<IpmiCallResult> {
  const argv = [
    '-I',
    'lanplus',
    '-H',
    bmc.address,
    '-p',
    String(bmc.port),
    '-U',
    bmc.user,
    '-f',
    bmc.passwordFile,
    '-C',
    String(bmc.cipherSuite),
    '-N',
    '1',
    '-R',
    '1',
    ...args,
  ];
  return new Promise((resolve) => {
    const child = execFile('ipmitool', argv, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.trim();
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        resolve({
          ok: false,
          out: e.code === 'ENOENT' ? 'ipmitool is not installed (apt-get install ipmitool)' : e.killed ? `no answer within ${timeoutMs} ms` : out || e.message,
        });
      } else {
        resolve({ ok: true, out });
      }
    });
    child.stdin?.end();
  });
}

/**
 * `ipmitool exec FILE` runs the cut and its first status in one session (ipmitool
 * cannot read commands from a pipe): the file, in the controller's state directory.
 */
function fenceCommands(stateDir: string): string | null {
  const file = path.join(stateDir, 'ipmi-fence.cmd');
  try {
    if (!fs.existsSync(file)) {
      fs.mkdirSync(stateDir, { recursive: true });
      fs.writeFileSync(file, 'chassis power off\nchassis power status\n');
    }
    return file;
  } catch {
    return null; // one session per command, then
  }
}

function powerIn(r: IpmiCallResult): 'on' | 'off' | { error: string } {
  if (/Chassis Power is off/i.test(r.out)) return 'off';
  if (/Chassis Power is on/i.test(r.out)) return 'on';
  return { error: r.ok ? `unexpected answer: ${r.out}` : r.out };
}

/** `chassis power status` → on / off, or why it could not be told. */
export async function chassisPower(bmc: IpmiPower): Promise<'on' | 'off' | { error: string }> {
  return powerIn(await ipmitool(bmc, ['chassis', 'power', 'status']));
}

/**
 * The relay of a host with a BMC: `off` is `chassis power off`, confirmed only once
 * `chassis power status` says off (first asked after the power wait, then every
 * poll, for at most the power timeout, as fence_ipmilan does). Anything short of
 * that (BMC unreachable, wrong password, still on) throws US_FENCE_UNCONFIRMED, so
 * that nothing is promoted while the host may still write. `on` is `chassis power on`.
 * No pid: the host is another machine; its status is the last confirmed state,
 * kept in the state store.
 */
export class IpmiRelay implements RelayDriver {
  /** Per host: bumped by every on/off, so that a status read that raced one is not recorded. */
  private readonly version = new Map<string, number>();
  private readonly busy = new Set<string>();

  constructor(
    private readonly config: UnderstudyConfig,
    private readonly store: StateStore,
  ) {}

  private bump(host: string): void {
    this.version.set(host, (this.version.get(host) ?? 0) + 1);
  }

  /**
   * Asks the BMC and records what it says when it differs from the last recorded state
   * (a machine powered by hand, or back after a power loss), with a `power-observed`
   * event. Skipped while an on/off of the host runs; a read that raced one is dropped.
   */
  async refresh(host: string): Promise<void> {
    if (this.busy.has(host)) return;
    const v = this.version.get(host) ?? 0;
    let bmc: IpmiPower;
    try {
      bmc = this.bmc(host);
    } catch {
      return;
    }
    const p = await chassisPower(bmc);
    if (typeof p !== 'string' || this.busy.has(host) || (this.version.get(host) ?? 0) !== v) return;
    const recorded = this.status(host).power;
    if (p === recorded) return;
    this.store.putRelay(host, p, null);
    this.store.addEvent({
      site: null,
      host,
      kind: 'power-observed',
      message: `${host}: its BMC reports power ${p} (last recorded ${recorded})`,
      data: { power: p, recorded },
    });
  }

  private bmc(host: string): IpmiPower {
    const h = this.config.hosts[host];
    if (!h) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: see hosts: in ${this.config.file}`);
    if (h.power === 'local') throw new UnderstudyError('US_INTERNAL', `host ${host} has no BMC (power: local)`);
    if (!fs.existsSync(h.power.ipmi.passwordFile)) {
      throw new UnderstudyError(
        'US_FENCE_UNCONFIRMED',
        `host ${host}: the BMC password file ${h.power.ipmi.passwordFile} does not exist; create it (hosts.${host}.power.ipmi.passwordFile in ${this.config.file})`,
      );
    }
    return h.power.ipmi;
  }

  status(host: string): RelayStatus {
    return { host, power: this.store.getRelay(host)?.power === 'on' ? 'on' : 'off', pid: null };
  }

  async on(host: string): Promise<RelayStatus> {
    this.bump(host);
    this.busy.add(host);
    try {
      return await this.powerOn(host);
    } finally {
      this.busy.delete(host);
      this.bump(host);
    }
  }

  async off(host: string): Promise<RelayStatus> {
    this.bump(host);
    this.busy.add(host);
    try {
      return await this.powerOff(host);
    } finally {
      this.busy.delete(host);
      this.bump(host);
    }
  }

  private async powerOn(host: string): Promise<RelayStatus> {
    const bmc = this.bmc(host);
    const r = await ipmitool(bmc, ['chassis', 'power', 'on']);
    if (!r.ok) {
      throw new UnderstudyError(
        'US_UNREACHABLE',
        `host ${host}: its BMC at ${bmc.address}:${bmc.port} did not power it on (${r.out}); check the management network and hosts.${host}.power.ipmi in ${this.config.file}`,
      );
    }
    this.store.putRelay(host, 'on', null);
    return { host, power: 'on', pid: null };
  }

  private async powerOff(host: string): Promise<RelayStatus> {
    const bmc = this.bmc(host);
    const started = Date.now();
    const deadline = started + bmc.timeoutMs;
    let cut: IpmiCallResult;
    let first: 'on' | 'off' | { error: string } | null = null;
    const commands = bmc.waitMs === 0 ? fenceCommands(this.config.controller.stateDir) : null;
    if (commands !== null) {
      // No power wait: the cut and the first status in one session (one RMCP+ handshake less).
      const r = await ipmitool(bmc, ['exec', commands]);
      cut = { ok: r.ok && /Down\/Off/i.test(r.out), out: r.out };
      first = powerIn(r);
    } else {
      cut = await ipmitool(bmc, ['chassis', 'power', 'off']);
      await sleep(Math.min(bmc.waitMs, Math.max(0, deadline - Date.now())));
    }
    const refused = cut.ok ? '' : `; power off refused: ${cut.out}`;
    for (;;) {
      const p = first ?? (await chassisPower(bmc));
      first = null;
      if (p === 'off') break;
      const last = `${p === 'on' ? 'the BMC still reports power on' : p.error}${refused}`;
      // A cut that did not go through is asked again (the BMC may have dropped it).
      if (p === 'on' && !cut.ok) await ipmitool(bmc, ['chassis', 'power', 'off']);
      if (Date.now() + bmc.pollMs > deadline) {
        throw new UnderstudyError(
          'US_FENCE_UNCONFIRMED',
          `host ${host}: power off not confirmed by its BMC at ${bmc.address}:${bmc.port} within ${bmc.timeoutMs} ms (${last}); check the management network to the BMC and cut the host's power by hand`,
        );
      }
      await sleep(bmc.pollMs);
    }
    this.store.putRelay(host, 'off', null);
    return { host, power: 'off', pid: null };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
