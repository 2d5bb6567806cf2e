import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { LocalListeners } from '../../../src/hosts/local-listeners.ts';

const ownGroup = (): number => {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
};

async function listen(host: string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => s.end());
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/**
 * A listener in a process of its own group (outside every host unless a test names its
 * group), killed when the test ends; `kill()` kills it earlier.
 */
async function listenerProcess(
  t: { after: (fn: () => Promise<void>) => void },
  host: string,
): Promise<{ pid: number; port: number; kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(0, '${host}', function () { console.log(this.address().port) })`], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = new Promise((r) => child.once('exit', r));
  const kill = async (): Promise<void> => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
    await exited;
  };
  t.after(kill);
  const port = await new Promise<number>((r) => child.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
  return { pid: child.pid!, port, kill };
}

test(
  'who listens: the owner of the socket a connection would reach, named by the host whose process group holds it',
  { skip: !fs.existsSync('/proc/net/tcp') },
  async (t) => {
    const me = ownGroup();
    const lookup = new LocalListeners(
      () => [
        { host: 'hA', group: me },
        { host: 'hOff', group: null },
      ],
      0,
    );

    const all = await listen('0.0.0.0');
    t.after(() => all.server.close());
    assert.deepEqual(
      lookup.whoListens('127.0.3.1', all.port),
      { kind: 'host', host: 'hA', bound: '0.0.0.0', allAddresses: true },
      'bound to all addresses: it answers on any host address',
    );

    const one = await listen('127.0.0.5');
    t.after(() => one.server.close());
    assert.deepEqual(lookup.whoListens('127.0.0.5', one.port), { kind: 'host', host: 'hA', bound: '127.0.0.5', allAddresses: false });
    assert.deepEqual(lookup.whoListens('127.0.0.6', one.port), { kind: 'nobody' });

    const v6 = await listen('::').catch(() => null);
    if (v6) {
      t.after(() => v6.server.close());
      const o = lookup.whoListens('127.0.0.9', v6.port);
      assert.equal(o.kind, 'host');
      if (o.kind === 'host') assert.deepEqual([o.bound, o.allAddresses], ['::', true]);
    }

    // A process of its own group, outside every host the lookup knows.
    const child = await listenerProcess(t, '127.0.0.7');
    const port = child.port;
    const outside = lookup.whoListens('127.0.0.7', port);
    assert.equal(outside.kind, 'outside');
    if (outside.kind === 'outside') assert.match(outside.process ?? '', new RegExp(`^pid ${child.pid} \\(.*node`));
    const withIt = new LocalListeners(() => [
      { host: 'hA', group: me },
      { host: 'hC', group: child.pid },
    ]);
    assert.deepEqual(withIt.whoListens('127.0.0.7', port), { kind: 'host', host: 'hC', bound: '127.0.0.7', allAddresses: false });
  },
);

test('the socket table is read once per tableTtlMs: a pass over many sites does not read it per site', { skip: !fs.existsSync('/proc/net/tcp') }, async (t) => {
  const me = ownGroup();
  const cached = new LocalListeners(() => [{ host: 'hA', group: me }], 60_000);
  const first = await listen('127.0.0.11');
  t.after(() => first.server.close());
  assert.equal(cached.whoListens('127.0.0.11', first.port).kind, 'host', 'the first call reads the table');
  const later = await listen('127.0.0.12');
  t.after(() => later.server.close());
  assert.deepEqual(cached.whoListens('127.0.0.12', later.port), { kind: 'nobody' }, 'within its lifetime the table read first answers');
  assert.equal(new LocalListeners(() => [{ host: 'hA', group: me }], 0).whoListens('127.0.0.12', later.port).kind, 'host', 'read again, it is there');
});

test(
  'an owner the cached table cannot place is confirmed on a fresh read: a socket closed and reopened by another host within the cache is that host, not "outside"',
  { skip: !fs.existsSync('/proc/net/tcp') },
  async (t) => {
    const me = ownGroup();
    // The old host's app, bound to all addresses, in its own process group.
    const child = await listenerProcess(t, '0.0.0.0');
    const port = child.port;
    let oldGroup: number | null = child.pid;
    const lookup = new LocalListeners(
      () => [
        { host: 'hNew', group: me },
        { host: 'hOld', group: oldGroup },
      ],
      60_000, // everything cached for the whole test
    );
    assert.deepEqual(lookup.whoListens('127.0.0.21', port), { kind: 'host', host: 'hOld', bound: '0.0.0.0', allAddresses: true });

    // The old host is fenced (its app killed), and the new one's app takes the same port.
    await child.kill();
    oldGroup = null;
    const server = net.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(port, '0.0.0.0', r));
    t.after(() => server.close());

    assert.deepEqual(
      lookup.whoListens('127.0.0.21', port),
      { kind: 'host', host: 'hNew', bound: '0.0.0.0', allAddresses: true },
      'the cached table still names the dead socket; a fresh read finds the new host',
    );
  },
);

test(
  'an outside owner that still holds its socket is answered from the cache, however old: nothing else can listen there meanwhile',
  { skip: !fs.existsSync('/proc/net/tcp') },
  async (t) => {
    const me = ownGroup();
    const child = await listenerProcess(t, '0.0.0.0');
    const port = child.port;
    const lookup = new LocalListeners(() => [{ host: 'hA', group: me }], 60_000);
    const first = lookup.whoListens('127.0.0.31', port);
    assert.equal(first.kind, 'outside');
    if (first.kind === 'outside') assert.match(first.process ?? '', new RegExp(`^pid ${child.pid} `));

    // A listener opened after the cached read is not seen, because nothing is read again
    // for an outside process that still holds its socket (a fresh read would see it).
    const other = await listen('127.0.0.32');
    t.after(() => other.server.close());
    const start = performance.now();
    for (let i = 0; i < 200; i++) assert.equal(lookup.whoListens('127.0.0.31', port).kind, 'outside');
    assert.deepEqual(lookup.whoListens('127.0.0.32', other.port), { kind: 'nobody' }, 'the table was not read again');
    t.diagnostic(`200 outside answers in ${(performance.now() - start).toFixed(1)} ms`);
  },
);
