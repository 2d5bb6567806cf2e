import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { slotAddress } from '../support/cluster.ts';
import { LISTEN_AT_HOST, TINY_APP, anyAppConfig, runUp, slotPortsFree, writeFiles } from '../support/any-app.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * Every start failure names its cause on the terminal with a stable code, as soon
 * as it is known, and leaves nothing running. Each test starts a real `up` on a
 * config an operator would write for their own app, with one thing wrong.
 */

const SLOT = claimSlot();

/** Every project directory, removed when the file's tests are done (their `up` runs are stopped by then). */
const projects: string[] = [];
after(() => {
  for (const d of projects) fs.rmSync(d, { recursive: true, force: true });
});

function project(files: Record<string, string>, config: string): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-startfail-'));
  projects.push(dir);
  writeFiles(dir, { ...files, 'understudy.yaml': config });
  return { dir, file: path.join(dir, 'understudy.yaml') };
}

/** Runs `up` to its end (it must fail), with cleanup even when the test fails. */
async function failedUp(
  t: { after: (fn: () => Promise<void>) => void },
  dir: string,
  file: string,
): Promise<{ code: number | null; out: string; tookMs: number }> {
  const run = runUp(file, dir, path.join(dir, 'state'));
  t.after(() => run.stop());
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    run.exited,
    new Promise<'hung'>((r) => {
      timer = setTimeout(() => r('hung'), 90_000);
    }),
  ]);
  clearTimeout(timer);
  assert.notEqual(code, 'hung', `up did not end:\n${run.output()}`);
  return { code: code as number | null, out: run.output(), tookMs: Date.now() - run.startedAt };
}

async function assertNothingLeft(dir: string): Promise<void> {
  assert.deepEqual(await slotPortsFree(SLOT), [], 'every port of the run is free again');
  for (const i of [0, 1]) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(3000, slotAddress(SLOT, i), () => s.close(() => resolve(true)));
    });
    assert.ok(free, `no app is left on host ${i + 1}`);
  }
  assert.ok(fs.existsSync(dir));
}

test('an app that exits at start: US_APP_EXITED at once, with its exit code and its last output', { timeout: 120_000 }, async (t) => {
  const { dir, file } = project(
    {
      'app.mjs': "console.log('booting the notes app');\nconsole.error('config error: NOTES_SECRET is not set');\nprocess.exit(3);\n",
    },
    anyAppConfig(SLOT, { app: { command: ['node', 'app.mjs', ...LISTEN_AT_HOST], port: 3000 } }),
  );
  const r = await failedUp(t, dir, file);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /understudy: start failed: app on h1: the app exited with code 3 before it answered its probe \[US_APP_EXITED\]/);
  assert.match(r.out, new RegExp(`command: \\S+node\\S* app\\.mjs --listen ${slotAddress(SLOT, 0).replace(/\./g, '\\.')}:3000`), 'the rendered command');
  assert.match(r.out, /config error: NOTES_SECRET is not set/, "the app's own last words");
  assert.match(r.out, /booting the notes app/);
  assert.match(
    r.out,
    /understudy: app on h1: the app exited with code 3 before it answered its probe \[US_APP_EXITED\]\s*$/,
    'the last line: the cause and its code',
  );
  assert.doesNotMatch(r.out, /US_INTERNAL|timed out after 30000 ms/);
  // Not after the 30 s start timeout: as soon as the agent saw the exit.
  assert.ok(r.tookMs < 20_000, `reported after ${r.tookMs} ms`);
  await assertNothingLeft(dir);
  t.diagnostic(`US_APP_EXITED reported ${r.tookMs} ms after up started`);
});

test('an app whose probe never answers healthily: US_APP_NOT_HEALTHY with the probe URL, its answers and what to change', { timeout: 120_000 }, async (t) => {
  const { dir, file } = project(
    { 'app.mjs': TINY_APP },
    anyAppConfig(SLOT, {
      // The app answers /health; the probe asks the default /healthz: 404.
      app: { command: ['node', 'app.mjs', ...LISTEN_AT_HOST], port: 3000, startTimeout: '3s' },
    }),
  );
  const r = await failedUp(t, dir, file);
  assert.equal(r.code, 1, r.out);
  const url = `http://${slotAddress(SLOT, 0)}:3000/healthz`;
  assert.match(
    r.out,
    new RegExp(
      `start failed: app on h1: no healthy answer from ${url.replace(/[./]/g, '\\$&')} within 3000 ms \\(app\\.startTimeout\\) \\(the app runs, pid \\d+\\) \\[US_APP_NOT_HEALTHY\\]`,
    ),
  );
  assert.match(r.out, /answered: (refused( ×\d+)?, then )?status 404 ×\d+ \("not found"\)|answered: .*status 404/i);
  assert.match(r.out, /what to do: the app answers status 404 on \/healthz, the probe wants any 2xx or 3xx: set health\.probe\.path/);
  assert.match(r.out, /\[US_APP_NOT_HEALTHY\]\s*$/);
  await assertNothingLeft(dir);
});

test('a missing seed: US_SEED_MISSING before anything starts, naming the place and the path', { timeout: 60_000 }, async (t) => {
  const { dir, file } = project(
    { 'app.mjs': TINY_APP },
    anyAppConfig(SLOT, {
      app: { command: ['node', 'app.mjs', ...LISTEN_AT_HOST], port: 3000, seed: 'seeds/notes' },
    }),
  );
  const r = await failedUp(t, dir, file);
  assert.equal(r.code, 1, r.out);
  assert.match(
    r.out,
    new RegExp(
      `understudy: sites\\.app\\.app\\.seed: ${path.join(dir, 'seeds/notes').replace(/[./]/g, '\\$&')} does not exist, and app has no volume yet to start from: fix the path \\(relative paths resolve against the config file's directory\\), or remove seed to start from an empty volume \\[US_SEED_MISSING\\]`,
    ),
  );
  assert.doesNotMatch(r.out, /starting 1 site/, 'checked before anything started');
  assert.ok(!fs.existsSync(path.join(dir, 'state', 'understudy.db')), 'no state was created');
  await assertNothingLeft(dir);
});

test("the app's port already in use on its host: US_APP_PORT_IN_USE naming the address, before the app starts", { timeout: 120_000 }, async (t) => {
  const { dir, file } = project(
    { 'app.mjs': TINY_APP },
    anyAppConfig(SLOT, {
      app: { command: ['node', 'app.mjs', ...LISTEN_AT_HOST], port: 3000 },
      health: { probe: { path: '/health' } },
    }),
  );
  const squatter = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => squatter.listen(3000, slotAddress(SLOT, 0), () => r()));
  t.after(() => new Promise<void>((r) => squatter.close(() => r())));
  const r = await failedUp(t, dir, file);
  assert.equal(r.code, 1, r.out);
  assert.match(
    r.out,
    new RegExp(
      `start failed: app cannot start on h1: ${slotAddress(SLOT, 0).replace(/\./g, '\\.')}:3000 is already in use by another process\\. Stop it .* bind the app to \\{\\{host\\.address\\}\\} \\[US_APP_PORT_IN_USE\\]`,
    ),
  );
  assert.ok(r.tookMs < 20_000, `reported after ${r.tookMs} ms`);
  // The app was never started: its log is empty or absent.
  const log = path.join(dir, 'state', 'logs', 'h1-app.log');
  assert.ok(!fs.existsSync(log) || !fs.readFileSync(log, 'utf8').includes('tiny app listening'), 'the app was not started');
  await new Promise<void>((r) => squatter.close(() => r()));
  await assertNothingLeft(dir);
});
