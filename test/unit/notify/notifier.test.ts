import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { NotifyTarget, UnderstudyConfig } from '../../../src/config/types.ts';
import { Notifier, globToRegExp } from '../../../src/notify/notifier.ts';
import { StateStore } from '../../../src/state/state-store.ts';

/** The notifier against a real HTTP receiver on loopback and a real SQLite state store. */

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-notify-'));
  dirs.push(d);
  return d;
}

function target(url: string, over: Partial<NotifyTarget> = {}): NotifyTarget {
  return {
    name: 'ops',
    webhook: { url, headers: { Authorization: { env: 'NOTIFY_TEST_AUTH' } }, timeoutMs: 1000 },
    events: ['*'],
    retry: { minMs: 20, maxMs: 80, alertAfter: 3, giveUpAfterMs: 60_000 },
    ...over,
  };
}

function configWith(dir: string, targets: NotifyTarget[]): UnderstudyConfig {
  return { baseDir: dir, notify: Object.fromEntries(targets.map((t) => [t.name, t])) } as unknown as UnderstudyConfig;
}

/** A receiver that can be told to fail (503) and records what it got. */
async function receiver() {
  const got: { id: number; kind: string; auth: string | undefined; attempt: number }[] = [];
  let failing = false;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      if (failing) {
        res.writeHead(503).end();
        return;
      }
      const e = JSON.parse(body) as { id: number; kind: string; attempt: number };
      got.push({ id: e.id, kind: e.kind, auth: req.headers.authorization, attempt: e.attempt });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return {
    got,
    url,
    server,
    setFailing: (f: boolean) => {
      failing = f;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const quiet = { warn: () => undefined, error: () => undefined };

test('glob patterns: only * is special', () => {
  assert.ok(globToRegExp('failover-*').test('failover-complete'));
  assert.ok(!globToRegExp('failover-*').test('switchover-complete'));
  assert.ok(globToRegExp('*').test('anything'));
  assert.ok(!globToRegExp('a.b').test('axb'));
});

test('delivers every matching event in order with its secret header; a failing receiver gets them all once back, and a notify-failing event is raised and recovered', async (t) => {
  process.env.NOTIFY_TEST_AUTH = 'Bearer s3cret-value';
  const rx = await receiver();
  const store = new StateStore(tempDir());
  const logged: string[] = [];
  const log = {
    warn: (o: object, m: string) => {
      logged.push(JSON.stringify(o) + m);
    },
    error: (o: object, m: string) => {
      logged.push(JSON.stringify(o) + m);
    },
  };
  const n = new Notifier(configWith(tempDir(), [target(rx.url, { events: ['failover-*', 'site-started'] })]), store, log);
  t.after(async () => {
    n.stop();
    store.close();
    await rx.close();
  });
  store.addEvent({ site: 'shop', host: null, kind: 'site-started', message: 'before the notifier', data: {} });
  n.start();
  const a = store.addEvent({ site: 'shop', host: 'h1', kind: 'site-started', message: 'x', data: {} });
  store.addEvent({ site: 'shop', host: null, kind: 'power-on', message: 'not wanted', data: {} });
  await until('first delivery', () => rx.got.length === 1);
  assert.equal(rx.got[0]!.id, a.id, 'events from before the target was first seen are not sent');
  assert.equal(rx.got[0]!.auth, 'Bearer s3cret-value');

  rx.setFailing(true);
  const b = store.addEvent({ site: 'shop', host: null, kind: 'failover-started', message: 'b', data: {} });
  const c = store.addEvent({ site: 'shop', host: null, kind: 'failover-complete', message: 'c', data: {} });
  await until('notify-failing raised', () => store.listEvents().some((e) => e.kind === 'notify-failing'));
  assert.ok(n.stats()[0]!.failing);
  assert.equal(n.stats()[0]!.pending, 2);
  rx.setFailing(false);
  await until('both delivered', () => rx.got.length === 3);
  assert.deepEqual(
    rx.got.map((g) => g.id),
    [a.id, b.id, c.id],
    'in order, each once',
  );
  assert.ok(rx.got[1]!.attempt >= 4, 'the first waiting one was retried');
  await until('notify-recovered', () => store.listEvents().some((e) => e.kind === 'notify-recovered'));
  assert.ok(!rx.got.some((g) => g.kind.startsWith('notify-')), 'a target never gets its own notify-* events');
  // notify-recovered is raised by the first delivery after the failures; the row of the
  // last one leaves the queue when its own confirmation is recorded, a moment later.
  await until('queue empty', () => n.stats()[0]!.pending === 0);
  assert.ok(!logged.join('\n').includes('s3cret'), 'the secret never reaches the log');
});

test('the queue survives a restart: what was not confirmed is delivered by the next notifier', async (t) => {
  process.env.NOTIFY_TEST_AUTH = 'x';
  const rx = await receiver();
  const stateDir = tempDir();
  const cfg = configWith(tempDir(), [target(rx.url)]);
  let store = new StateStore(stateDir);
  let n = new Notifier(cfg, store, quiet);
  t.after(async () => {
    n.stop();
    store.close();
    await rx.close();
  });
  n.start();
  rx.setFailing(true);
  const ids = [1, 2, 3].map((i) => store.addEvent({ site: 'shop', host: null, kind: `k${i}`, message: '', data: {} }).id);
  await until('queued', () => n.stats()[0]!.pending === 3);
  // The controller dies (no clean stop of deliveries), and a new one starts on the same state.
  n.stop();
  store.close();
  rx.setFailing(false);
  store = new StateStore(stateDir);
  const later = store.addEvent({ site: 'shop', host: null, kind: 'k4', message: 'while nobody listened', data: {} }).id;
  n = new Notifier(cfg, store, quiet);
  n.start();
  await until('all delivered', () => new Set(rx.got.map((g) => g.id)).size >= 4);
  // At least once: an attempt the stopped notifier had in flight may also land (a receiver dedupes by id).
  assert.deepEqual([...new Set(rx.got.map((g) => g.id))], [...ids, later]);
});

test('a command target gets the event on stdin; sites filter; given up after giveUpAfter', async (t) => {
  const dir = tempDir();
  const out = path.join(dir, 'out.jsonl');
  const script = path.join(dir, 'hook.sh');
  fs.writeFileSync(script, `#!/bin/sh\n[ "$UNDERSTUDY_EVENT_KIND" = fail-me ] && exit 3\ncat >> ${out}\necho >> ${out}\n`, { mode: 0o755 });
  const store = new StateStore(tempDir());
  const n = new Notifier(
    configWith(dir, [
      {
        name: 'cmd',
        command: { run: [script], timeoutMs: 2000 },
        events: ['*'],
        sites: ['shop'],
        retry: { minMs: 10, maxMs: 20, alertAfter: 100, giveUpAfterMs: 150 },
      },
    ]),
    store,
    quiet,
  );
  t.after(() => {
    n.stop();
    store.close();
  });
  n.start();
  store.addEvent({ site: 'outlet', host: null, kind: 'x', message: 'other site', data: {} });
  store.addEvent({ site: null, host: null, kind: 'y', message: 'no site', data: {} });
  const bad = store.addEvent({ site: 'shop', host: null, kind: 'fail-me', message: '', data: {} });
  const good = store.addEvent({ site: 'shop', host: null, kind: 'ok', message: 'hello', data: { n: 1 } });
  await until('given up, then the next delivered', () => fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('"ok"'), 5000);
  const lines = fs
    .readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: number; data: unknown });
  assert.deepEqual(
    lines.map((l) => l.id),
    [good.id],
  );
  assert.deepEqual(lines[0]!.data, { n: 1 });
  const gaveUp = store.listEvents().find((e) => e.kind === 'notify-given-up')!;
  assert.equal(gaveUp.data.event, bad.id);
});
