import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { request } from 'undici';
import { configYaml, ports, slotAddress, sleep, waitUntil } from '../support/cluster.ts';
import { slotPortsFree, twoHostHead, upUntilUp } from '../support/any-app.ts';
import { installNpmApp } from '../support/npm-app.ts';
import type { Status, Ev } from '../support/views.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * A published open-source app, installed from npm at a pinned version, run as a site
 * from the config its operator would write: Actual's sync server (a budgeting app's
 * server). It keeps `account.sqlite` (rollback journal, not WAL) and a blob per
 * uploaded budget file, answers `/health` with `{"status":"UP"}`, and takes its
 * address, port and data directory from variables (`{{host.address}}`,
 * `{{site.app.port}}`, `{{volume.path}}`). Under a bounded upload load its host's
 * process group is SIGKILLed: it fails over, and no upload acknowledged more than
 * one replication lag (the one `failover-complete` reports) before the kill is lost.
 */

const PKG = '@actual-app/sync-server';
const VERSION = '25.6.0'; // the last release without an engines floor above Node.js 20
const SLOT = claimSlot();
const p = ports(SLOT);
const H1 = slotAddress(SLOT, 0);
const FRONT = `http://127.0.0.1:${p.front}`;
const APP_PORT = 5006;
const MAX_UPLOADS = 120;
const LOAD_MS = 45_000;

function config(cache: string): string {
  const server = path.join(cache, 'node_modules', '@actual-app', 'sync-server', 'build', 'bin', 'actual-server.js');
  const doc = {
    ...twoHostHead(SLOT),
    sites: {
      budget: {
        front: `127.0.0.1:${p.front}`,
        app: {
          command: ['node', server],
          port: APP_PORT,
          env: { ACTUAL_HOSTNAME: '{{host.address}}', ACTUAL_PORT: '{{site.app.port}}', ACTUAL_DATA_DIR: '{{volume.path}}' },
        },
        primary: 'h1',
        standby: ['h2'],
        // Every probe counts against the app's own rate limit (500 a minute per client): 4 a second.
        health: { probe: { path: '/health', expect: { body: '"status":\\s*"UP"' }, every: '250ms', timeout: '500ms', fall: 2, rise: 1 } },
      },
    },
  };
  return configYaml(doc, "test/e2e/npm-app-failover.test.ts (Actual's sync server, kept up by Understudy)");
}

async function call(
  method: 'GET' | 'POST',
  p: string,
  opts: { token?: string; headers?: Record<string, string>; json?: unknown; body?: Buffer } = {},
): Promise<{ status: number; body: Buffer }> {
  const res = await request(`${FRONT}${p}`, {
    method,
    headers: {
      ...(opts.token ? { 'x-actual-token': opts.token } : {}),
      ...(opts.json !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body,
    headersTimeout: 15_000,
    bodyTimeout: 15_000,
  });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

const api = async <T>(q: string): Promise<T> => {
  const res = await request(`http://127.0.0.1:${p.controller}${q}`, { headersTimeout: 5000, bodyTimeout: 5000 });
  return JSON.parse(await res.body.text()) as T;
};

interface Upload {
  id: string;
  sha: string;
  body: Buffer;
  sentAt: number;
  ackAt: number | null;
  status: number | string;
}

async function upload(token: string, id: string): Promise<Upload> {
  const body = crypto.randomBytes(4096);
  const u: Upload = { id, sha: crypto.createHash('sha256').update(body).digest('hex'), body, sentAt: Date.now(), ackAt: null, status: 'pending' };
  try {
    const r = await call('POST', '/sync/upload-user-file', {
      token,
      body,
      headers: {
        'content-type': 'application/encrypted-file',
        'x-actual-format': '2',
        'x-actual-name': encodeURIComponent(`budget ${id}`),
        'x-actual-file-id': id,
      },
    });
    u.status = r.status;
    if (r.status === 200 && (JSON.parse(r.body.toString()) as { status?: string }).status === 'ok') u.ackAt = Date.now();
  } catch (e) {
    u.status = (e as Error).message;
  }
  return u;
}

function portRefuses(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** The project directory, removed when the file's test is done (its `up` is stopped by then). */
const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

test(
  `a published npm app (${PKG}@${VERSION}, SQLite in rollback-journal mode) fails over on SIGKILL with nothing acknowledged more than one lag before the kill lost`,
  { timeout: 1_500_000 },
  async (t) => {
    const cache = installNpmApp(PKG, VERSION);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-npmapp-'));
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, 'understudy.yaml'), config(cache));
    const run = await upUntilUp(t, path.join(dir, 'understudy.yaml'), dir, path.join(dir, 'state'), 120_000);
    const st = await waitUntil(
      'serving, healthy, replication streaming',
      async () => {
        const s = await api<Status>('/v1/status');
        return s.sites[0]!.state === 'serving' && s.sites[0]!.primary.healthy && s.sites[0]!.replication.state === 'streaming' ? s : null;
      },
      60_000,
    );
    assert.equal(st.sites[0]!.primary.host, 'h1');
    assert.ok(
      fs.existsSync(path.join(dir, 'array-a', 'volumes', 'budget', 'server-files', 'account.sqlite')),
      'the app keeps its store in its volume ({{volume.path}})',
    );

    const boot = await call('POST', '/account/bootstrap', { json: { password: 'understudy-e2e-password' } });
    assert.equal(boot.status, 200, boot.body.toString());
    const token = (JSON.parse(boot.body.toString()) as { data: { token: string } }).data.token;
    await sleep(1000); // the session is older than any lag when the host is cut

    // ---- bounded upload load (count and time); the primary's host is cut mid-way
    const uploads: Upload[] = [];
    const lags: number[] = [];
    let killAt = 0;
    let next = 0;
    const loadEnd = Date.now() + LOAD_MS;
    const worker = async (): Promise<void> => {
      while (next < MAX_UPLOADS && Date.now() < loadEnd) {
        const id = `budget-${String(next++).padStart(4, '0')}`;
        uploads.push(await upload(token, id));
        await sleep(40);
      }
    };
    const sampler = (async () => {
      while (killAt === 0 && Date.now() < loadEnd) {
        const s = await api<Status>('/v1/status').catch(() => null);
        const lag = s?.sites[0]?.replication.lagMs;
        if (typeof lag === 'number') lags.push(lag);
        await sleep(100);
      }
    })();
    const load = Promise.all([worker(), worker()]);
    await waitUntil('40 uploads acknowledged', async () => uploads.filter((u) => u.ackAt !== null).length >= 40, 30_000);
    const h1Pid = st.hosts.find((h) => h.name === 'h1')!.pid!;
    killAt = Date.now();
    process.kill(-h1Pid, 'SIGKILL');
    await load;
    await sampler;

    // ---- the fault was real; the action taken: one failover to h2, h1 fenced
    assert.throws(() => process.kill(-h1Pid, 0), /ESRCH/, "h1's process group is gone");
    assert.ok(await portRefuses(H1, APP_PORT), 'nothing answers on h1 any more');
    const done = await waitUntil(
      'failover-complete',
      async () => (await api<{ events: Ev[] }>('/v1/events?limit=1000')).events.find((e) => e.kind === 'failover-complete'),
      60_000,
    );
    const after = await api<Status>('/v1/status');
    assert.equal(after.sites[0]!.state, 'serving');
    assert.equal(after.sites[0]!.primary.host, 'h2');
    assert.deepEqual(after.sites[0]!.primary.command!.slice(1), [path.join(cache, 'node_modules/@actual-app/sync-server/build/bin/actual-server.js')]);
    assert.equal(after.hosts.find((h) => h.name === 'h1')!.power, 'off');
    const lagMs = done.data.replicationLagMsAtFailure;
    assert.equal(typeof lagMs, 'number', `failover-complete reports the lag: ${done.message}`);

    // ---- nothing acknowledged more than one lag before the kill is lost
    const listed = await call('GET', '/sync/list-user-files', { token });
    assert.equal(listed.status, 200, listed.body.toString());
    const files = new Set(
      (JSON.parse(listed.body.toString()) as { data: { fileId: string; deleted: boolean | number }[] }).data.filter((f) => !f.deleted).map((f) => f.fileId),
    );
    const acked = uploads.filter((u) => u.ackAt !== null);
    const old = acked.filter((u) => u.ackAt! < killAt - (lagMs as number));
    const afterFailover = acked.filter((u) => u.sentAt > Number(done.data.servingAgainAt ?? Infinity));
    assert.ok(old.length >= 30, `enough uploads acknowledged before the kill to prove something (${old.length})`);
    const lost = old.filter((u) => !files.has(u.id));
    assert.deepEqual(
      lost.map((u) => u.id),
      [],
      `lost ${lost.length} of ${old.length} uploads acknowledged more than ${String(lagMs)} ms before the kill`,
    );
    for (const u of [...old.slice(-10), ...afterFailover.slice(0, 10)]) {
      const r = await call('GET', '/sync/download-user-file', { token, headers: { 'x-actual-file-id': u.id } });
      assert.equal(r.status, 200, `${u.id}: ${r.body.toString().slice(0, 200)}`);
      assert.equal(crypto.createHash('sha256').update(r.body).digest('hex'), u.sha, `${u.id}: the blob is the one uploaded`);
    }
    assert.deepEqual(
      afterFailover.filter((u) => !files.has(u.id)).map((u) => u.id),
      [],
      'uploads acknowledged by h2 are there',
    );
    const failed = uploads.filter((u) => u.ackAt === null);
    assert.ok(
      failed.every((u) => u.status === 503 || typeof u.status === 'string'),
      `uploads failed only while the host was cut: ${failed.map((u) => `${u.id} ${u.status}`).join(', ')}`,
    );

    // ---- the actions not taken
    const events = (await api<{ events: Ev[] }>('/v1/events?limit=1000')).events;
    assert.equal(events.filter((e) => e.kind === 'failover-started').length, 1, 'one failover');
    assert.deepEqual(
      events.filter((e) => ['stale-primary', 'controller-start-failed', 'failover-blocked'].includes(e.kind)).map((e) => e.message),
      [],
    );

    // ---- again, after the failover: uploads go on on h2
    const second: Upload[] = [];
    for (let i = 0; i < 15; i++) second.push(await upload(token, `after-${i}`));
    assert.ok(
      second.every((u) => u.ackAt !== null),
      second.map((u) => u.status).join(','),
    );
    const relisted = await call('GET', '/sync/list-user-files', { token });
    const ids = new Set((JSON.parse(relisted.body.toString()) as { data: { fileId: string }[] }).data.map((f) => f.fileId));
    assert.ok(second.every((u) => ids.has(u.id)));

    await run.stop();
    assert.equal(await run.exited, 0, run.output());
    assert.deepEqual(await slotPortsFree(SLOT), []);
    t.diagnostic(
      `${acked.length} of ${uploads.length} uploads acknowledged; ${old.length} more than ${String(lagMs)} ms before the kill, all kept; lag samples max ${Math.max(0, ...lags)} ms; ${done.message}`,
    );
  },
);
