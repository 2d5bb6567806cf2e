import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfig } from '../../src/config/load-config.ts';
import { endpointToString } from '../../src/config/types.ts';
import { BIN, ROOT, configYaml, http, sleep, startCluster, waitUntil, writeConfig, type ClusterOptions } from '../support/cluster.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * `cluster: { secret, tls }`: every part (controller API, director admin, every storage
 * processor and the vault, every host's agent) serves HTTPS with its own certificate from
 * `understudy certs`, and refuses a call without the cluster secret, with a wrong one, and
 * over plain HTTP, each with its own clear error. With all of that on, the parts still
 * work together: the site serves, replicates, fails over after a SIGKILL, and the CLI
 * reaches the API with the config's token and CA. The secret reaches no log.
 */
const SLOT = claimSlot();
const SECRET = 'c1uster-secret-0123456789abcdef-e2e';
const TOKEN = 'operator-token-0123456789abcdef';

interface Answer {
  status: number;
  code: string | null;
  error: string | null;
}

async function call(dispatcher: Agent, url: string, auth: string | null, method = 'GET', body?: unknown): Promise<Answer> {
  try {
    const res = await request(url, {
      method: method as 'GET',
      dispatcher,
      headersTimeout: 5000,
      bodyTimeout: 5000,
      headers: { ...(auth ? { authorization: auth } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    let code: string | null = null;
    try {
      code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? null;
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode, code, error: null };
  } catch (e) {
    return { status: 0, code: null, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
}

test(
  'cluster secret and TLS: every internal endpoint refuses no credentials, a wrong secret and plain HTTP; the cluster still fails over',
  { timeout: 180_000 },
  async (t) => {
    const sec = fs.mkdtempSync(path.join(os.tmpdir(), `understudy-e2e-${SLOT}-sec-`));
    t.after(() => fs.rmSync(sec, { recursive: true, force: true }));
    fs.writeFileSync(path.join(sec, 'cluster-secret'), `${SECRET}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(sec, 'api-token'), `${TOKEN}\n`, { mode: 0o600 });
    const certs = path.join(sec, 'certs');
    const opts: ClusterOptions & { slot: number } = {
      slot: SLOT,
      replication: 'sync',
      tokenFile: path.join(sec, 'api-token'),
      cluster: { secret: { file: `${sec}/cluster-secret` }, tls: { ca: `${certs}/ca.pem`, cert: `${certs}/{{part}}.pem`, key: `${certs}/{{part}}-key.pem` } },
    };
    // The certificates, made by the command an operator runs, from the same config.
    const draft = writeConfig(opts, sec);
    const made = execFileSync(process.execPath, [BIN, 'certs', '-c', draft, '--out', certs], { cwd: ROOT, encoding: 'utf8' });
    for (const part of ['controller', 'director', 'array-a', 'array-b', 'vault', 'h1', 'h2', 'h3']) {
      assert.ok(fs.existsSync(path.join(certs, `${part}.pem`)) && fs.existsSync(path.join(certs, `${part}-key.pem`)), `certs made ${part}.pem: ${made}`);
    }
    assert.equal(fs.statSync(path.join(certs, 'h1-key.pem')).mode & 0o077, 0, 'keys are readable by their owner only');
    // Twice in a row: what exists is kept (the CA above all).
    const ca0 = fs.readFileSync(path.join(certs, 'ca.pem'), 'utf8');
    execFileSync(process.execPath, [BIN, 'certs', '-c', draft, '--out', certs], { cwd: ROOT });
    assert.equal(fs.readFileSync(path.join(certs, 'ca.pem'), 'utf8'), ca0, 'a second run keeps the CA');

    const cluster = await startCluster({ ...opts, env: { UNDERSTUDY_LOG_LEVEL: 'info' } });
    t.after(() => cluster.stop());
    const config = loadConfig(cluster.configFile, { baseDir: path.dirname(cluster.configFile) });
    const ca = fs.readFileSync(path.join(certs, 'ca.pem'));
    const trusting = new Agent({ connect: { ca } });
    const plain = new Agent();
    t.after(() => Promise.all([trusting.close(), plain.close()]));

    // The site serves through the front (plain HTTP for the shop's clients, as before).
    const order = await http(`${cluster.front}/api/orders`, { method: 'POST', body: { customer: 'tls', items: [{ productId: 1, qty: 1 }] } });
    assert.equal(order.status, 201, 'the shop takes an order while every internal call is authenticated');

    // Every internal endpoint, walked.
    const endpoints: { part: string; url: string; path: string }[] = [
      { part: 'controller', url: `https://${endpointToString(config.controller.listen)}`, path: '/v1/status' },
      { part: 'director', url: `https://${endpointToString(config.director.listen)}`, path: '/v1/routes' },
      ...Object.values(config.storage).map((s) => ({ part: s.name, url: `https://${endpointToString(s.listen)}`, path: '/v1/status' })),
      ...['h1', 'h2'].map((h) => ({
        part: h,
        url: `https://${endpointToString({ host: config.hosts[h]!.address, port: config.hosts[h]!.agentPort })}`,
        path: '/v1/status',
      })),
    ];
    const lines: string[] = [];
    for (const e of endpoints) {
      const none = await call(trusting, `${e.url}${e.path}`, null);
      const wrong = await call(trusting, `${e.url}${e.path}`, 'Bearer not-the-secret-0123456789');
      const overHttp = await call(plain, `${e.url.replace('https:', 'http:')}${e.path}`, `Bearer ${SECRET}`);
      const right = await call(trusting, `${e.url}${e.path}`, `Bearer ${SECRET}`);
      const untrusted = await call(plain, `${e.url}${e.path}`, `Bearer ${SECRET}`);
      lines.push(
        `${e.part}: none ${none.status} ${none.code}, wrong ${wrong.status} ${wrong.code}, http ${overHttp.status} ${overHttp.code}, right ${right.status}, unknown CA ${untrusted.error}`,
      );
      assert.deepEqual([none.status, none.code], [401, 'US_UNAUTHORIZED'], `${e.part}: a call without credentials is refused`);
      assert.deepEqual([wrong.status, wrong.code], [401, 'US_UNAUTHORIZED'], `${e.part}: a wrong secret is refused`);
      assert.deepEqual([overHttp.status, overHttp.code], [400, 'US_TLS_REQUIRED'], `${e.part}: plain HTTP is refused, even with the secret`);
      assert.equal(right.status, 200, `${e.part}: the secret over TLS is accepted (the refusals above are not a broken endpoint)`);
      assert.match(String(untrusted.error), /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/, `${e.part}: a caller that does not trust the cluster CA does not talk to it`);
    }
    // The write paths too: a replica never takes frames from an unauthenticated peer.
    for (const s of Object.values(config.storage)) {
      const frames = await call(trusting, `https://${endpointToString(s.listen)}/v1/replica/shop/frames`, null, 'POST', { epoch: 99, frames: [] });
      assert.equal(frames.status, 401, `storage ${s.name}: frames without credentials refused`);
    }
    const promote = await call(
      trusting,
      `https://${endpointToString(config.storage['array-b']!.listen)}/v1/volumes/shop/promote`,
      'Bearer wrong-secret-0123456789abc',
      'POST',
      { epoch: 99 },
    );
    assert.equal(promote.status, 401, 'a promotion with a wrong secret is refused');
    const route = await call(trusting, `https://${endpointToString(config.director.listen)}/v1/routes/shop`, null, 'PUT', { epoch: 99 });
    assert.equal(route.status, 401, 'a route without credentials is refused');
    for (const l of lines) t.diagnostic(l);

    // The operators' CLI reaches the API over TLS with the config's CA and token.
    const cliStatus = JSON.parse(
      execFileSync(process.execPath, [BIN, 'status', '--json', '-c', cluster.configFile], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, UNDERSTUDY_TOKEN: '' },
      }),
    ) as { sites: { name: string; state: string; epoch: number; primary: { host: string } }[] };
    const shop0 = cliStatus.sites.find((s) => s.name === 'shop')!;
    assert.equal(shop0.primary.host, 'h1');
    let cliRefused = '';
    try {
      execFileSync(process.execPath, [BIN, 'status', '-c', cluster.configFile], {
        cwd: ROOT,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, UNDERSTUDY_TOKEN: 'wrong-token-0123456789' },
      });
    } catch (e) {
      cliRefused = String((e as { stderr?: string }).stderr);
    }
    assert.match(cliRefused, /wrong token/, 'the CLI with a wrong token is refused with a clear message');

    // All of it working together: SIGKILL the primary; fenced, promoted (sync: nothing lost), routed.
    assert.equal(
      (await call(trusting, `https://${endpointToString(config.controller.listen)}/v1/status`, `Bearer ${TOKEN}`)).status,
      200,
      'the token is accepted by the controller API',
    );
    const st = (await (
      await request(`https://${endpointToString(config.controller.listen)}/v1/status`, { dispatcher: trusting, headers: { authorization: `Bearer ${TOKEN}` } })
    ).body.json()) as { hosts: { name: string; pid: number | null }[] };
    const pid = st.hosts.find((h) => h.name === 'h1')!.pid!;
    process.kill(-pid, 'SIGKILL');
    const killedAt = Date.now();
    const after = await waitUntil(
      'shop served from another host after h1 was killed',
      async () => {
        const s = (await (
          await request(`https://${endpointToString(config.controller.listen)}/v1/status`, {
            dispatcher: trusting,
            headers: { authorization: `Bearer ${TOKEN}` },
          })
        ).body.json()) as { sites: { name: string; state: string; epoch: number; primary: { host: string } }[] };
        const shop = s.sites.find((x) => x.name === 'shop')!;
        return shop.primary.host !== 'h1' && shop.state === 'serving' ? shop : null;
      },
      30_000,
    );
    assert.equal(after.epoch, shop0.epoch + 1, 'one failover');
    const read = await http(`${cluster.front}/api/orders/${(order.body as { id: number }).id}`);
    assert.equal(read.status, 200, 'the order acknowledged before the crash is there (sync mode)');
    t.diagnostic(`failover under TLS: serving from ${after.primary.host} ${Date.now() - killedAt} ms after the kill`);

    // The secret and the token never reach a log.
    await sleep(200);
    const logs = [
      cluster.output(),
      ...walk(path.join(cluster.dir, 'state'))
        .filter((f) => /\.log$|\.jsonl?$/.test(f))
        .map((f) => fs.readFileSync(f, 'utf8')),
    ].join('\n');
    assert.ok(logs.length > 0);
    assert.ok(!logs.includes(SECRET), 'the cluster secret is in no log');
    assert.ok(!logs.includes(TOKEN), 'the token is in no log');
  },
);

test('a config whose parts listen beyond loopback without cluster.secret is refused, naming what to set', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `understudy-e2e-${SLOT}-cfg-`));
  try {
    const file = path.join(dir, 'understudy.yaml');
    const beyondLoopback = {
      storage: { a: { path: `${dir}/a`, listen: '192.0.2.10:7100' }, b: { path: `${dir}/b`, listen: '192.0.2.10:7101' } },
      hosts: { h1: { address: '192.0.2.11', storage: 'a' }, h2: { address: '192.0.2.12', storage: 'b' } },
      sites: { shop: { front: '127.0.0.1:8080', app: { command: ['node', 'server.js'], port: 3000 }, primary: 'h1', standby: ['h2'] } },
    };
    fs.writeFileSync(file, configYaml(beyondLoopback, 'test/e2e/cluster-auth.test.ts'));
    let out = '';
    try {
      execFileSync(process.execPath, [BIN, 'validate', '-c', file], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      out = `${String((e as { stdout?: string }).stdout)}${String((e as { stderr?: string }).stderr)}`;
    }
    assert.match(out, /cluster\.secret is not set/, out);
    assert.match(out, /storage\.a\.listen 192\.0\.2\.10/);

    // With the secret, the config is valid; but the controller API still refuses to listen beyond loopback without a token.
    fs.writeFileSync(path.join(dir, 'secret'), 'a-cluster-secret-0123456789abcdef\n', { mode: 0o600 });
    fs.writeFileSync(
      file,
      configYaml(
        { controller: { listen: '192.0.2.10:7070', state: `${dir}/state` }, cluster: { secret: { file: `${dir}/secret` } }, ...beyondLoopback },
        'test/e2e/cluster-auth.test.ts',
      ),
    );
    execFileSync(process.execPath, [BIN, 'validate', '-c', file], { cwd: ROOT, encoding: 'utf8' });
    let refused = '';
    try {
      const { UNDERSTUDY_TOKEN: _t, ...env } = process.env;
      execFileSync(process.execPath, [BIN, 'controller', '-c', file], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env, timeout: 20_000 });
    } catch (e) {
      refused = `${String((e as { stdout?: string }).stdout)}${String((e as { stderr?: string }).stderr)}`;
    }
    assert.match(refused, /beyond loopback, without a token: set controller\.token/, refused);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(path.join(dir, d.name)) : [path.join(dir, d.name)]));
}
