import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../../src/config/load-config.ts';
import { HostRelays } from '../../../src/power/host-relays.ts';
import { StateStore } from '../../../src/state/state-store.ts';

/**
 * The IPMI relay against a stand-in `ipmitool` on PATH (a script that keeps the
 * chassis state in a file and records its arguments): the real thing is exercised
 * against ipmi_sim in the machines e2e tests.
 */
function setup(t: { after: (fn: () => void) => void }, mode: 'normal' | 'stays-on' | 'unreachable', extra = '') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-ipmi-'));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(dir, 'power'), 'on');
  fs.writeFileSync(
    path.join(bin, 'ipmitool'),
    `#!/bin/sh
echo "$@" >> ${dir}/calls
mode=${mode}
if [ $mode = unreachable ]; then echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; exit 1; fi
handle() {
  case "$1" in
    status) echo "Chassis Power is $(cat ${dir}/power)" ;;
    off) [ $mode = stays-on ] || echo off > ${dir}/power; echo "Chassis Power Control: Down/Off" ;;
    on) echo on > ${dir}/power; echo "Chassis Power Control: Up/On" ;;
  esac
}
prev=; last=
for a; do prev=$last; last=$a; done
if [ "$prev" = exec ]; then
  while read -r a b c; do echo "> $a $b $c" >> ${dir}/calls; handle "$c"; done < "$last"
else
  handle "$last"
fi
`,
    { mode: 0o755 },
  );
  fs.writeFileSync(path.join(dir, 'bmc-password'), 'not-in-argv\n');
  const file = path.join(dir, 'understudy.yaml');
  fs.writeFileSync(
    file,
    `
controller: { state: ${dir}/state }
# A host beyond loopback needs the cluster secret (never read here: nothing calls the parts).
cluster: { secret: { file: ${dir}/cluster-secret } }
storage:
  a: { path: ${dir}/a }
  b: { path: ${dir}/b }
hosts:
  r1: { address: 10.0.1.2, storage: a, power: { ipmi: { address: 10.0.9.1, user: fence, passwordFile: bmc-password, poll: 50ms, timeout: 600ms${extra} } } }
  r2: { address: 127.0.198.1, storage: b }
sites:
  shop:
    front: 127.0.0.1:29980
    app: { command: [node, server.js], port: 3000 }
    primary: r1
    standby: [r2]
`,
  );
  const config = loadConfig(file);
  const store = new StateStore(config.controller.stateDir);
  const oldPath = process.env.PATH;
  process.env.PATH = `${bin}:${oldPath}`;
  t.after(() => {
    process.env.PATH = oldPath;
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    store,
    relay: new HostRelays(config, store, path.join(dir, 'logs')),
    setPower: (p: string) => fs.writeFileSync(path.join(dir, 'power'), p),
    calls: () => fs.readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n'),
    power: () => fs.readFileSync(path.join(dir, 'power'), 'utf8').trim(),
  };
}

test('ipmi relay: off is chassis power off, confirmed by a status that says off; on is chassis power on; no pid', async (t) => {
  const { relay, calls, power } = setup(t, 'normal');
  assert.deepEqual(relay.status('r1'), { host: 'r1', power: 'off', pid: null }, 'nothing confirmed yet');
  const off = await relay.off('r1');
  assert.deepEqual(off, { host: 'r1', power: 'off', pid: null });
  assert.equal(power(), 'off');
  const c = calls();
  // No power wait: the cut and the first status in one session.
  assert.match(c[0]!, /^-I lanplus -H 10\.0\.9\.1 -p 623 -U fence -f \S+bmc-password -C 17 .*exec \S+fence\.cmd$/);
  assert.deepEqual(c.slice(1, 3), ['> chassis power off', '> chassis power status']);
  assert.ok(
    c.every((l) => !l.includes('not-in-argv')),
    'the password never is on the command line',
  );
  assert.deepEqual(await relay.on('r1'), { host: 'r1', power: 'on', pid: null });
  assert.equal(power(), 'on');
  assert.equal(relay.status('r1').power, 'on');
  // Twice in a row, after an on.
  await relay.off('r1');
  assert.equal(relay.status('r1').power, 'off');
});

test('ipmi relay: a BMC that keeps saying on is an unconfirmed fence within the power timeout', async (t) => {
  const { relay, calls } = setup(t, 'stays-on');
  await relay.on('r1');
  const started = Date.now();
  await assert.rejects(relay.off('r1'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'US_FENCE_UNCONFIRMED');
    assert.match(e.message, /power off not confirmed by its BMC at 10\.0\.9\.1:623 within 600 ms \(the BMC still reports power on\)/);
    return true;
  });
  const took = Date.now() - started;
  assert.ok(took >= 500 && took < 3000, `bounded by the power timeout (${took} ms)`);
  assert.ok(calls().filter((l) => l.endsWith('status')).length >= 3, 'status was polled');
  assert.equal(relay.status('r1').power, 'on', 'an unconfirmed cut leaves the host counted as on');
});

test('ipmi relay: an unreachable BMC is an unconfirmed fence saying what failed and what to do', async (t) => {
  const { relay } = setup(t, 'unreachable');
  await assert.rejects(relay.off('r1'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'US_FENCE_UNCONFIRMED');
    assert.match(e.message, /Unable to establish IPMI v2/);
    assert.match(e.message, /check the management network to the BMC and cut the host's power by hand/);
    return true;
  });
  await assert.rejects(relay.on('r1'), /did not power it on/);
});

test('host relays: a host with power: local keeps the local driver', async (t) => {
  const { relay } = setup(t, 'normal');
  assert.deepEqual(relay.status('r2'), { host: 'r2', power: 'off', pid: null });
});

test('host relays: watch records what the BMC reports when it differs (a machine powered by hand), with an event', async (t) => {
  const { relay, store, setPower } = setup(t, 'normal');
  await relay.on('r1');
  setPower('off');
  relay.watch(50);
  t.after(() => relay.unwatch());
  const deadline = Date.now() + 3000;
  while (relay.status('r1').power !== 'off' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(relay.status('r1').power, 'off');
  const ev = store.listEvents({ afterId: 0 }).filter((e) => e.kind === 'power-observed');
  assert.equal(ev.length, 1);
  assert.match(ev[0]!.message, /r1: its BMC reports power off \(last recorded on\)/);
  setPower('on');
  while (relay.status('r1').power !== 'on' && Date.now() < deadline + 3000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(relay.status('r1').power, 'on');
  relay.unwatch();
  assert.equal(relay.status('r2').power, 'off', 'a local host is not asked');
});

test('ipmi relay: with a power wait, the cut and the status polls are separate calls, the first status after the wait', async (t) => {
  const { relay, calls } = setup(t, 'normal', ', wait: 200ms');
  const started = Date.now();
  await relay.off('r1');
  assert.ok(Date.now() - started >= 200, 'the power wait was kept');
  const c = calls();
  assert.match(c[0]!, /chassis power off$/);
  assert.match(c[1]!, /chassis power status$/);
  assert.equal(c.length, 2);
});
