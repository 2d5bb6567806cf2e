import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT, api, configHead, hostsSection, http, ports, sleep, startCluster, waitStreaming, waitUntil } from '../support/cluster.ts';
import { type Status, assertNoEvents, events } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * Who answers on an address is decided by the process that listens, not by what
 * answers there. On the embedded default every host's 127.x.y.1 address is on the
 * same machine, so an app bound to all addresses (test/fixtures/listen-all-app.mjs,
 * like many published apps) answers on every host's address:
 *
 * 1. No `stale-primary` for the primary's own process, before and after a failover;
 *    one `app-listens-on-all-addresses` warning that says how to bind it.
 * 2. A real stale app — a process outside Understudy answering on a standby's
 *    address — is still reported (twice: started, stopped, started again).
 */

interface AgentStatus {
  sites: { site: string; state: string; pid: number | null }[];
}

const SLOT = claimSlot();
const FIXTURE = path.join(ROOT, 'test/fixtures/listen-all-app.mjs');
/** The stale-app watch looks once a second: this many seconds let it look at least three times. */
const WATCH_MS = 3500;

/** The pid of the process that answers on address:port (the fixture says it), or null. */
async function pidAt(address: string, port: number): Promise<number | null> {
  const r = await http(`http://${address}:${port}/healthz`, { timeoutMs: 2000 }).catch(() => null);
  return r?.status === 200 ? (r.body as { pid: number }).pid : null;
}

test(
  "an app bound to all addresses: no stale-primary from the primary's own process, before and after a failover; one warning",
  { timeout: 120_000 },
  async (t) => {
    const p = ports(SLOT);
    const appPort = p.front + 10;
    const cluster = await startCluster({
      slot: SLOT,
      config: (ctx) => ({
        ...configHead(ctx),
        hosts: hostsSection(ctx, [
          { name: 'h1', storage: 'array-a', boot: true },
          { name: 'h2', storage: 'array-b', boot: true },
          { name: 'h3', storage: 'array-b', boot: false },
        ]),
        sites: {
          notes: {
            front: `127.0.0.1:${ctx.ports.front}`,
            app: { command: ['node', FIXTURE], port: appPort, env: { PORT: String(appPort) } },
            primary: 'h1',
            standby: ['h2', 'h3'],
            health: { probe: { path: '/healthz', every: '100ms', timeout: '300ms', fall: 2, rise: 1 } },
          },
        },
      }),
    });
    t.after(() => cluster.stop());
    const before = await waitStreaming<Status>(cluster);
    const [a1, a2, a3] = ['h1', 'h2', 'h3'].map((h) => cluster.hostAddress(h)) as [string, string, string];
    const appPid = async (host: string, address: string): Promise<number> => {
      const st = await http(`http://${address}:7001/v1/status`);
      const pid = (st.body as AgentStatus).sites.find((s) => s.site === 'notes')?.pid;
      assert.ok(pid, `${host}'s agent runs the app`);
      return pid;
    };

    // The fault is real: the primary's one process answers on every host's address.
    const h1App = await appPid('h1', a1);
    assert.equal(await pidAt(a1, appPort), h1App);
    assert.equal(await pidAt(a2, appPort), h1App, "h1's app answers on h2's address");
    assert.equal(await pidAt(a3, appPort), h1App, "h1's app answers on h3's address (h3 is off)");
    await sleep(WATCH_MS);
    let evs = await events(cluster);
    assert.deepEqual(
      evs.filter((e) => e.kind === 'stale-primary').map((e) => e.message),
      [],
      'no stale-primary before the failover',
    );
    const warnings = evs.filter((e) => e.kind === 'app-listens-on-all-addresses');
    assert.equal(warnings.length, 1, 'one warning at start');
    assert.equal(warnings[0]!.host, 'h1');
    assert.match(
      warnings[0]!.message,
      new RegExp(
        `^notes's app on h1 listens on all addresses \\(0\\.0\\.0\\.0:${appPort}\\), so on this machine it also answers on the other hosts' addresses \\(h2 ${a2.replace(/\./g, '\\.')}, h3 ${a3.replace(/\./g, '\\.')}\\).*Bind it to its host: pass \\{\\{host\\.address\\}\\} in sites\\.notes\\.app\\.command or app\\.env`,
      ),
    );

    // A crash of h1: the site fails over to h2, whose app binds all addresses again.
    process.kill(-before.hosts.find((h) => h.name === 'h1')!.pid!, 'SIGKILL');
    await waitUntil(
      'failover to h2',
      async () => {
        const s = (await api<Status>(cluster, '/v1/status')).sites[0]!;
        return s.state === 'serving' && s.primary.host === 'h2' ? s : null;
      },
      30_000,
      50,
    );
    const h2App = await appPid('h2', a2);
    assert.notEqual(h2App, h1App);
    assert.equal(await pidAt(a1, appPort), h2App, "h2's app answers on the old primary's address");
    assert.equal(await pidAt(a3, appPort), h2App, "and on h3's");
    await sleep(WATCH_MS);

    // The actions taken and not taken.
    evs = await events(cluster);
    assert.deepEqual(
      evs.filter((e) => e.kind === 'stale-primary').map((e) => e.message),
      [],
      'no stale-primary after the failover either',
    );
    assert.equal(evs.filter((e) => e.kind === 'app-listens-on-all-addresses').length, 1, 'still one warning');
    assert.equal(evs.filter((e) => e.kind === 'failover-started').length, 1);
    assert.equal(evs.filter((e) => e.kind === 'failure-detected').length, 1);
    const after = await api<Status>(cluster, '/v1/status');
    assert.equal(after.sites[0]!.epoch, before.sites[0]!.epoch + 1);
    assert.equal(after.hosts.find((h) => h.name === 'h2')!.power, 'on');
    assert.equal(after.hosts.find((h) => h.name === 'h3')!.power, 'off', 'nothing powered on for a stale app');
    const front = await http(`${cluster.front}/anything`);
    assert.equal((front.body as { pid: number }).pid, h2App, 'the front is served by h2');
  },
);

test("a process outside Understudy answering on a standby's address is still reported, each time it appears", { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster({ slot: SLOT });
  t.after(() => cluster.stop());
  await waitStreaming<Status>(cluster);
  const a3 = cluster.hostAddress('h3');
  const rogues: ChildProcess[] = [];
  t.after(() => {
    for (const r of rogues) r.kill('SIGKILL');
  });
  const startRogue = async (): Promise<ChildProcess> => {
    const r = spawn(process.execPath, [FIXTURE], { env: { ...process.env, HOST: a3, PORT: '3000' }, stdio: 'ignore' });
    rogues.push(r);
    await waitUntil('the rogue app to answer', async () => (await pidAt(a3, 3000)) === r.pid, 10_000, 50);
    return r;
  };

  for (const round of [1, 2]) {
    const rogue = await startRogue();
    const ev = await waitUntil(
      `stale-primary #${round}`,
      async () => (await events(cluster)).filter((e) => e.kind === 'stale-primary')[round - 1],
      10_000,
      100,
    );
    assert.equal(ev.host, 'h3');
    assert.match(
      ev.message,
      new RegExp(
        `^shop answers on h3 \\(${a3.replace(/\./g, '\\.')}:3000\\) by a process outside Understudy \\(pid ${rogue.pid} \\(.*listen-all-app\\.mjs\\)\\), but its primary is h1 at epoch 1`,
      ),
    );
    assert.equal((ev.data.owner as { kind: string }).kind, 'outside');
    rogue.kill('SIGKILL');
    await waitUntil(`stale-primary-gone #${round}`, async () => (await events(cluster)).filter((e) => e.kind === 'stale-primary-gone')[round - 1], 10_000, 100);
  }

  // Not reported: the primary itself, the warm standby (no app runs there), and no warning (the shop binds its own address).
  const evs = await events(cluster);
  assert.deepEqual(
    evs.filter((e) => e.kind === 'stale-primary').map((e) => e.host),
    ['h3', 'h3'],
  );
  assert.equal(evs.filter((e) => e.kind === 'app-listens-on-all-addresses').length, 0);
  assertNoEvents(evs, ['failure-detected', 'failover-started', 'power-off']);
});
