import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { waitAppAnswers, type AppStartWatch } from '../../../src/controller/app-start-watch.ts';
import { AppProcess } from '../../../src/hosts/app-process.ts';
import { assertPortFree } from '../../../src/hosts/port-check.ts';
import { HttpProbe } from '../../../src/monitor/http-probe.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import type { AgentAppStatus } from '../../../src/shared/contracts.ts';
import { freePort } from '../../support/free-port.ts';

const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-appproc-'));
after(() => fs.rmSync(logDir, { recursive: true, force: true }));

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('AppProcess: an exited app reports its exit code and the last lines it wrote since this start (bounded)', async () => {
  const app = new AppProcess('notes', path.join(logDir, 'h1-notes.log'));
  const base = { epoch: 1, cwd: logDir, dataDir: logDir, env: {}, mode: 'rw' as const };
  app.start({ ...base, command: [process.execPath, '-e', "console.log('first run'); process.exit(0)"] });
  await until('first exit', () => app.status().state === 'exited');
  assert.deepEqual(app.status().output, ['first run']);
  const many = Array.from({ length: 40 }, (_, i) => `line ${i}`).join('\\n');
  app.start({ ...base, command: [process.execPath, '-e', `console.log("${many}"); console.error('boom: no config'); process.exit(7)`] });
  await until('second exit', () => app.status().state === 'exited');
  const st = app.status();
  assert.equal(st.exitCode, 7);
  assert.equal(st.signal, null);
  assert.equal(st.output!.length, 20, 'at most 20 lines');
  assert.equal(st.output![19], 'boom: no config');
  assert.ok(!st.output!.includes('first run'), "only this start's output");
  assert.equal(st.logFile, path.join(logDir, 'h1-notes.log'));
});

test('AppProcess: a program that cannot be started is `exited` with the reason', async () => {
  const app = new AppProcess('notes', path.join(logDir, 'h1-nothing.log'));
  app.start({ epoch: 1, cwd: logDir, dataDir: logDir, env: {}, mode: 'rw', command: ['/nonexistent/notes-server'] });
  await until('exit', () => app.status().state === 'exited');
  assert.match(app.status().error ?? '', /ENOENT/);
});

test('assertPortFree: a taken address:port is US_APP_PORT_IN_USE naming it; a free one passes', async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await assert.rejects(assertPortFree('h1', 'notes', { address: '127.0.0.1', port }), (e: unknown) => {
    assert.ok(e instanceof UnderstudyError);
    assert.equal(e.code, 'US_APP_PORT_IN_USE');
    assert.match(e.message, new RegExp(`notes cannot start on h1: 127\\.0\\.0\\.1:${port} is already in use`));
    return true;
  });
  await new Promise<void>((r) => s.close(() => r()));
  await assertPortFree('h1', 'notes', { address: '127.0.0.1', port });
});

function watch(url: string, app: () => AgentAppStatus | undefined, over: Partial<AppStartWatch> = {}): AppStartWatch {
  const probe = new HttpProbe(url, 200);
  return {
    site: 'notes',
    host: 'h1',
    probe,
    probeConfig: { type: 'http', path: '/healthz', timeoutMs: 200 },
    agentStatus: async () => ({ host: 'h1', pid: 1, pgid: 1, sites: app() ? [app()!] : [] }),
    timeoutMs: 2000,
    command: ['node', 'notes.mjs', '--listen', '127.0.0.1:1'],
    ...over,
  };
}

const running: AgentAppStatus = { site: 'notes', state: 'running', pid: 4242, exitCode: null, since: 0 };

test('waitAppAnswers: resolves once the app answers 2xx', async (t) => {
  let up = false;
  const srv = http.createServer((_q, res) => {
    res.statusCode = up ? 200 : 503;
    res.end(up ? 'fine' : 'warming up');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  );
  setTimeout(() => {
    up = true;
  }, 150);
  const w = watch(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/healthz`, () => running);
  await waitAppAnswers(w);
  await w.probe.close();
});

test('waitAppAnswers: an app that exits is reported at once (US_APP_EXITED), with exit code, answers and output', async () => {
  const port = await freePort();
  let exitedNow = false;
  setTimeout(() => {
    exitedNow = true;
  }, 100);
  const w = watch(
    `http://127.0.0.1:${port}/healthz`,
    () =>
      exitedNow
        ? {
            ...running,
            state: 'exited',
            pid: null,
            exitCode: 3,
            signal: null,
            output: ['booting', 'config error: NOTES_SECRET is not set'],
            logFile: '/var/log/h1-notes.log',
          }
        : running,
    { timeoutMs: 30_000 },
  );
  const t0 = Date.now();
  await assert.rejects(waitAppAnswers(w), (e: unknown) => {
    assert.ok(e instanceof UnderstudyError);
    assert.equal(e.code, 'US_APP_EXITED');
    const lines = e.message.split('\n');
    assert.equal(lines[0], 'notes on h1: the app exited with code 3 before it answered its probe');
    assert.ok(lines.includes('  command: node notes.mjs --listen 127.0.0.1:1'));
    assert.ok(
      lines.some((l) => /^ {2}probe http:\/\/127\.0\.0\.1:\d+\/healthz answered: refused ×\d+$/.test(l)),
      e.message,
    );
    assert.ok(lines.includes('  last output (/var/log/h1-notes.log):'));
    assert.ok(lines.includes('    config error: NOTES_SECRET is not set'));
    return true;
  });
  assert.ok(Date.now() - t0 < 1000, `reported after ${Date.now() - t0} ms, not after the 30 s timeout`);
  await w.probe.close();
});

test('waitAppAnswers: EADDRINUSE in the output of an exited app is US_APP_PORT_IN_USE; a failed spawn is US_APP_SPAWN_FAILED', async () => {
  const port = await freePort();
  const inUse = watch(`http://127.0.0.1:${port}/healthz`, () => ({
    ...running,
    state: 'exited',
    exitCode: 1,
    output: ['Error: listen EADDRINUSE: address already in use 0.0.0.0:3000'],
  }));
  await assert.rejects(
    waitAppAnswers(inUse),
    (e: unknown) => (e as UnderstudyError).code === 'US_APP_PORT_IN_USE' && /bind it to \{\{host\.address\}\}/.test((e as Error).message),
  );
  await inUse.probe.close();
  const spawnFailed = watch(`http://127.0.0.1:${port}/healthz`, () => ({ ...running, state: 'exited', pid: null, error: 'spawn notes-server ENOENT' }));
  await assert.rejects(
    waitAppAnswers(spawnFailed),
    (e: unknown) => (e as UnderstudyError).code === 'US_APP_SPAWN_FAILED' && /spawn notes-server ENOENT/.test((e as Error).message),
  );
  await spawnFailed.probe.close();
});

test('waitAppAnswers: never healthy → US_APP_NOT_HEALTHY after the timeout, with the answers counted and the hint', async (t) => {
  const srv = http.createServer((_q, res) => {
    res.statusCode = 404;
    res.end('Cannot GET /healthz');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  );
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/healthz`;
  const w = watch(url, () => running, { timeoutMs: 400 });
  const t0 = Date.now();
  await assert.rejects(waitAppAnswers(w), (e: unknown) => {
    assert.ok(e instanceof UnderstudyError);
    assert.equal(e.code, 'US_APP_NOT_HEALTHY');
    const lines = e.message.split('\n');
    assert.equal(lines[0], `notes on h1: no healthy answer from ${url} within 400 ms (app.startTimeout) (the app runs, pid 4242)`);
    assert.match(lines[2]!, /^ {2}probe .* answered: status 404 ×\d+ \("Cannot GET \/healthz"\)$/);
    assert.match(lines[3]!, /what to do: the app answers status 404 on \/healthz, the probe wants any 2xx or 3xx: set health\.probe\.path/);
    assert.deepEqual(
      (e.details as { answers: { what: string }[] }).answers.map((a) => a.what),
      ['status 404'],
    );
    return true;
  });
  assert.ok(Date.now() - t0 >= 400 && Date.now() - t0 < 2000);
  await w.probe.close();
});
