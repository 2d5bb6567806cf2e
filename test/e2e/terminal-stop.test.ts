import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ports, writeConfig } from '../support/cluster.ts';
import { killProcessesOf, processesOf, startTerminalUp, type TerminalUp } from '../support/procs.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * `up` as a terminal runs it: the leader of a process group that Ctrl-C signals as a
 * whole. What runs is read from /proc (every process that mentions the test's
 * directory: parts, agents, apps), never from Understudy's own view.
 */
const SLOT = claimSlot();
/** `up`'s own bound for an ordered stop (STOP_BOUND_MS in up-command.ts), plus slack for a loaded machine. */
const STOP_BOUND_MS = 10_000 + 3_000;
const SHOP = path.join('examples', 'shop', 'server.js');

function scratch(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), `understudy-e2e-${SLOT}-`));
  t.after(() => {
    killProcessesOf(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function track(t: TestContext, up: TerminalUp): TerminalUp {
  t.after(() => {
    try {
      process.kill(-up.pgid, 'SIGKILL');
    } catch {
      /* ended */
    }
  });
  return up;
}

const apps = (dir: string) => processesOf(dir).filter((p) => p.argv.some((a) => a.endsWith(SHOP)));

async function serves(front: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${front}/api/products`, { signal: AbortSignal.timeout(2000) });
    return r.status === 200;
  } catch {
    return false;
  }
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Nothing of the run is left: polled briefly, since the kernel reaps the last exits just after `up` ends. */
async function nothingLeft(dir: string): Promise<void> {
  const until = Date.now() + 1000;
  while (processesOf(dir).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const left = processesOf(dir);
  assert.deepEqual(
    left.map((p) => p.argv.slice(0, 4).join(' ')),
    [],
    'nothing of the run is left running (/proc)',
  );
}

test(
  "Ctrl-C to the terminal's process group, twice in a row: every host powered off, every part stopped, nothing left in /proc",
  { timeout: 150_000 },
  async (t) => {
    const dir = scratch(t);
    const file = writeConfig({ slot: SLOT }, dir);
    const front = ports(SLOT).front;
    for (const round of [1, 2]) {
      const up = track(t, startTerminalUp(file));
      await up.waitUp();
      assert.ok(await serves(front), `round ${round}: the shop serves through the front`);
      const running = processesOf(dir);
      assert.ok(running.length >= 5, `round ${round}: the run's processes are there to stop (${running.length})`);
      assert.equal(apps(dir).length, 1, `round ${round}: one shop app runs`);
      assert.ok(
        running.some((p) => p.pgid !== up.pgid),
        "the parts run in process groups of their own: the terminal's SIGINT does not reach them",
      );

      const t0 = Date.now();
      process.kill(-up.pgid, 'SIGINT');
      const ended = await within(up.exited, STOP_BOUND_MS, `round ${round}: up ends after Ctrl-C`);
      t.diagnostic(`round ${round}: up ended ${ended.at - t0} ms after SIGINT (code ${ended.code})`);
      assert.equal(ended.code, 0, `round ${round}: an ordered stop exits 0\n${up.output().slice(-2000)}`);
      assert.match(up.output(), /stopp/i, 'up said it was stopping');
      await nothingLeft(dir);
      assert.equal(await serves(front), false, `round ${round}: nothing answers at the front any more`);
    }
  },
);

test('up SIGKILLed leaves its parts; the next up takes them back: one app serving, no orphan; then Ctrl-C ends it all', { timeout: 150_000 }, async (t) => {
  const dir = scratch(t);
  const file = writeConfig({ slot: SLOT }, dir);
  const front = ports(SLOT).front;
  const first = track(t, startTerminalUp(file));
  await first.waitUp();
  const before = processesOf(dir);
  process.kill(first.child.pid!, 'SIGKILL'); // only `up`: its parts are in groups of their own
  await first.exited;
  await new Promise((r) => setTimeout(r, 500));
  const orphans = processesOf(dir);
  assert.ok(orphans.length >= 4, `the killed up left its parts running (${orphans.length} of ${before.length}): the fault is real`);
  assert.equal(apps(dir).length, 1, 'and its shop app');

  const second = track(t, startTerminalUp(file));
  await second.waitUp();
  assert.ok(await serves(front), 'the shop serves after the second up');
  assert.equal(apps(dir).length, 1, 'exactly one shop app runs (taken back or restarted, never two)');
  const oldParts = orphans.filter((p) => !p.argv.some((a) => a.endsWith(SHOP)) && !p.argv.includes('agent'));
  const stillThere = new Set(processesOf(dir).map((p) => p.pid));
  assert.deepEqual(
    oldParts.filter((p) => stillThere.has(p.pid)).map((p) => p.argv.slice(2, 4).join(' ')),
    [],
    "the first run's storage, director and controller were stopped",
  );

  process.kill(-second.pgid, 'SIGINT');
  const ended = await within(second.exited, STOP_BOUND_MS, 'the second up ends after Ctrl-C');
  assert.equal(ended.code, 0, second.output().slice(-2000));
  await nothingLeft(dir);
});

test('a second Ctrl-C, or SIGTERM to up alone: ended within the bound, nothing left', { timeout: 150_000 }, async (t) => {
  const dir = scratch(t);
  const file = writeConfig({ slot: SLOT }, dir);
  {
    const up = track(t, startTerminalUp(file));
    await up.waitUp();
    const t0 = Date.now();
    process.kill(-up.pgid, 'SIGINT');
    await new Promise((r) => setTimeout(r, 1100)); // past the window in which a repeat is the same request
    // An ordered stop of this one-site run often ends within that second: the repeat then finds nothing to signal.
    let repeated = true;
    try {
      process.kill(-up.pgid, 'SIGINT');
    } catch {
      repeated = false;
    }
    t.diagnostic(repeated ? 'the second Ctrl-C reached up while it was stopping' : 'up had ended before the second Ctrl-C');
    const ended = await within(up.exited, STOP_BOUND_MS, 'up ends after a second Ctrl-C');
    t.diagnostic(`second Ctrl-C: up ended ${ended.at - t0} ms after the first`);
    await nothingLeft(dir);
  }
  {
    const up = track(t, startTerminalUp(file));
    await up.waitUp();
    const t0 = Date.now();
    process.kill(up.child.pid!, 'SIGTERM');
    const ended = await within(up.exited, STOP_BOUND_MS, 'up ends after SIGTERM');
    t.diagnostic(`SIGTERM: up ended ${ended.at - t0} ms after it`);
    assert.equal(ended.code, 0, up.output().slice(-2000));
    await nothingLeft(dir);
  }
});
