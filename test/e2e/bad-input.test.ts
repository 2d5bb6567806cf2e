import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { BIN, ROOT, ports, writeConfig } from '../support/cluster.ts';
import { claimSlot } from '../support/slots.ts';
import { ephemeralPortRange } from '../../src/cli/listen-ports.ts';

function understudy(args: string[], cwd = ROOT) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, UNDERSTUDY_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** Every directory a test made, removed when the file's tests are done. */
const made: string[] = [];
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-bad-'));
  made.push(dir);
  return dir;
}

/** Nothing listens on any of the cluster's ports and no host process survives. */
async function nothingRunning(slot: number): Promise<void> {
  const p = ports(slot);
  for (const port of [p.controller, p.director, p.storageA, p.storageB, p.vault]) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    assert.ok(free, `port ${port} is free again`);
  }
}

test('validate: a malformed config names file:line:col', () => {
  const dir = tmp();
  const file = path.join(dir, 'understudy.yaml');
  fs.writeFileSync(file, 'sites:\n  shop:\n    front: [unclosed\n');
  const r = understudy(['validate', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.out, /understudy\.yaml:\d+:\d+: /);
});

test('validate: an unknown host in a site and two hosts with one address are named with their place', () => {
  const dir = tmp();
  const file = writeConfig({ slot: claimSlot() }, dir);
  const doc = parseYaml(fs.readFileSync(file, 'utf8')) as { sites: { shop: { primary: string } }; hosts: Record<string, { address: string }> };
  doc.sites.shop.primary = 'h9';
  doc.hosts.h3!.address = doc.hosts.h2!.address;
  fs.writeFileSync(file, stringifyYaml(doc));
  const r = understudy(['validate', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.out, /understudy\.yaml:\d+:\d+: sites\.shop\.primary: .*h9/);
  assert.match(r.out, /understudy\.yaml:\d+:\d+: hosts\.h3\.address: /);
});

test('validate: the demo config is valid', () => {
  const r = understudy(['validate', '-c', 'examples/demo.yaml']);
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /warning:/, 'no listener of the demo is in the range of ports for outgoing connections');
});

test("validate: a front inside this machine's range of ports for outgoing connections is valid, with a warning that names it", (t) => {
  const range = ephemeralPortRange();
  if (!range) return t.skip('no /proc/sys/net/ipv4/ip_local_port_range on this machine');
  const dir = tmp();
  const file = writeConfig({ slot: claimSlot() }, dir);
  const doc = parseYaml(fs.readFileSync(file, 'utf8')) as { sites: { shop: { front: string } } };
  const port = range[0] + 1000;
  doc.sites.shop.front = `127.0.0.1:${port}`;
  fs.writeFileSync(file, stringifyYaml(doc));
  const r = understudy(['validate', '-c', file]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^ok: /m);
  assert.match(
    r.out,
    new RegExp(
      `warning: .*sites\\.shop\\.front: 127\\.0\\.0\\.1:${port} is inside this machine's range of ports for outgoing connections \\(${range[0]}–${range[1]}\\).*choose a port below ${range[0]}`,
    ),
  );
  assert.equal((r.out.match(/warning:/g) ?? []).length, 1, 'only the front is named');
});

test('up: a front port already taken stops the start before anything runs', async (t) => {
  const slot = claimSlot();
  const dir = tmp();
  const file = writeConfig({ slot }, dir);
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(ports(slot).front, '127.0.0.1', () => r()));
  t.after(() => blocker.close());
  const r = understudy(['up', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.out, new RegExp(`sites\\.shop\\.front: 127\\.0\\.0\\.1:${ports(slot).front} is already in use`));
  await nothingRunning(slot);
  assert.ok(!fs.existsSync(path.join(dir, 'state', 'understudy.db')), 'no state was created');
});

test('up: a volume whose .db is not a database is refused, naming the file, and nothing is left running', async () => {
  const slot = claimSlot();
  const dir = tmp();
  const file = writeConfig({ slot }, dir);
  fs.mkdirSync(path.join(dir, 'array-a', 'volumes', 'shop'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'array-a', 'volumes', 'shop', 'orders.db'), 'this is not a database, it is a note');
  const r = understudy(['up', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.out, /orders\.db.*not an SQLite database/);
  await nothingRunning(slot);
});
