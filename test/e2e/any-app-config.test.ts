import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { BIN, ports, slotAddress, sleep, waitUntil } from '../support/cluster.ts';
import { LISTEN_AT_HOST, TINY_APP, anyAppConfig, slotPortsFree, upUntilUp, writeFiles } from '../support/any-app.ts';
import { request } from 'undici';
import type { Status, Ev } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * An app that is not the demo shop, configured as its operator would: its address on
 * its command line through templates, a plain-text health answer, relative paths
 * beside the config file, `up -c /abs/path.yaml` run from `/` (as a service manager
 * would). It serves, fails over on a SIGKILL of its host, and comes back after a
 * restart of `up` on the state kept beside the file, with a TCP probe the second time.
 */

const SLOT = claimSlot();
const p = ports(SLOT);
const H1 = slotAddress(SLOT, 0);
const H2 = slotAddress(SLOT, 1);

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, text: await res.body.text() };
}

async function post(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { method: 'POST', headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, text: await res.body.text() };
}

const api = async <T>(path: string): Promise<T> => JSON.parse((await get(`http://127.0.0.1:${p.controller}${path}`)).text) as T;
const front = `http://127.0.0.1:${p.front}`;

/** The project directory, removed when the file's test is done (its `up` is stopped by then). */
const made: string[] = [];
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

test(
  'an app configured as its operator would: templates, plain-text health, paths beside the file, up from /; failover on SIGKILL; restart with a TCP probe',
  { timeout: 240_000 },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-anyapp-'));
    made.push(dir);
    const stateDir = path.join(dir, 'state');
    const rootStateBefore = fs.existsSync('/state');
    const app = { command: ['node', 'app.mjs', ...LISTEN_AT_HOST], port: 3000, env: { NOTES_TITLE: 'notes on {{host.name}}' } };
    writeFiles(dir, {
      'app.mjs': TINY_APP,
      'understudy.yaml': anyAppConfig(SLOT, { app, health: { probe: { path: '/health', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } } }),
    });
    const file = path.join(dir, 'understudy.yaml');

    // ---- first run: HTTP probe on /health (a plain-text 200: healthy by default)
    const run = await upUntilUp(t, file, '/', stateDir, 90_000);
    assert.ok(fs.existsSync(path.join(stateDir, 'understudy.db')), 'the state is beside the file');
    assert.ok(
      fs.existsSync(path.join(dir, 'array-a', 'volumes', 'app', 'hits.txt')) || fs.existsSync(path.join(dir, 'array-a', 'volumes', 'app')),
      'the volume is beside the file',
    );
    assert.equal(fs.existsSync('/state'), rootStateBefore, 'nothing was written in the working directory /');
    assert.ok(fs.existsSync(path.join(stateDir, 'logs', 'h1-app.log')));
    assert.match(
      fs.readFileSync(path.join(stateDir, 'logs', 'h1-app.log'), 'utf8'),
      new RegExp(`tiny app listening on ${H1.replace(/\./g, '\\.')}:3000`),
      'the app got its address from its command line',
    );

    for (let i = 1; i <= 3; i++) {
      const r = await post(`${front}/hits`);
      assert.equal(r.status, 201);
      assert.equal(r.text.trim(), `hits ${i} on h1 ${H1}:3000`, 'UNDERSTUDY_HOST, UNDERSTUDY_ADDRESS and UNDERSTUDY_PORT');
    }
    const st = await api<Status>('/v1/status');
    assert.equal(st.sites[0]!.primary.host, 'h1');
    assert.equal(st.sites[0]!.primary.healthy, true, 'a plain-text 200 is healthy');
    assert.deepEqual(st.sites[0]!.primary.command!.slice(1), ['app.mjs', '--listen', `${H1}:3000`], 'status shows the rendered command');
    const table = spawnSync(process.execPath, [BIN, 'status', '--api', `http://127.0.0.1:${p.controller}`], { encoding: 'utf8', cwd: '/' });
    assert.match(table.stdout, new RegExp(`app on h1 runs: \\S+ app\\.mjs --listen ${H1.replace(/\./g, '\\.')}:3000`));

    // ---- SIGKILL of h1's process group: failover to h2, where the command renders h2's address
    await waitUntil('replication streaming', async () => (await api<Status>('/v1/status')).sites[0]!.replication.state === 'streaming', 30_000);
    await sleep(500); // let the plain file ship (async)
    const h1pid = st.hosts.find((h) => h.name === 'h1')!.pid!;
    process.kill(-h1pid, 'SIGKILL');
    const moved = await waitUntil(
      'failover to h2',
      async () => {
        const s = await api<Status>('/v1/status');
        return s.sites[0]!.state === 'serving' && s.sites[0]!.primary.host === 'h2' && s.sites[0]!.primary.healthy ? s : null;
      },
      30_000,
    );
    assert.deepEqual(moved.sites[0]!.primary.command!.slice(1), ['app.mjs', '--listen', `${H2}:3000`]);
    assert.equal(moved.hosts.find((h) => h.name === 'h1')!.power, 'off', 'the failed host stays fenced');
    const after = await post(`${front}/hits`);
    assert.equal(after.status, 201);
    assert.match(after.text, new RegExp(`^hits \\d+ on h2 ${H2.replace(/\./g, '\\.')}:3000`));
    const events = (await api<{ events: Ev[] }>('/v1/events?limit=1000')).events;
    assert.equal(events.filter((e) => e.kind === 'failover-started').length, 1, 'one failover');
    assert.ok(!events.some((e) => e.kind === 'stale-primary' || e.kind === 'controller-start-failed'), events.map((e) => e.kind).join(', '));

    // ---- stop, and start again from / with a TCP probe: the state beside the file says h2
    await run.stop();
    assert.equal(await run.exited, 0, run.output());
    assert.deepEqual(await slotPortsFree(SLOT), []);
    writeFiles(dir, { 'understudy.yaml': anyAppConfig(SLOT, { app, health: { probe: { type: 'tcp', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } } }) });
    const again = await upUntilUp(t, file, '/', stateDir, 90_000);
    const st2 = await api<Status>('/v1/status');
    assert.equal(st2.sites[0]!.primary.host, 'h2', 'the primary recorded beside the file');
    assert.equal(st2.sites[0]!.primary.healthy, true, 'healthy through the TCP probe');
    const r2 = await post(`${front}/hits`);
    assert.equal(r2.status, 201);
    assert.match(r2.text, /on h2 /);
    await again.stop();
    assert.equal(await again.exited, 0, again.output());
    assert.deepEqual(await slotPortsFree(SLOT), []);
    assert.equal(fs.existsSync('/state'), rootStateBefore);
    t.diagnostic(`served on h1, failed over to h2 on SIGKILL, restarted from / with a TCP probe on the state in ${stateDir}`);
  },
);
