import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { BIN, ROOT, http, sleep, startCluster, waitUntil } from '../support/cluster.ts';
import { apiCall, demoLikeConfig, type DemoStatus } from '../support/demo-like.ts';
import { histogram, parseMetrics, samples } from '../support/prometheus.ts';
import { claimSlot } from '../support/slots.ts';

/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core), on a
 * demo-like cluster (two shops, shared spares) whose API has a token. The page asks
 * for the token, shows both sites serving, shows a SIGKILL of shop's primary live as a
 * failover with its figures and steps (no reload), and runs a switchover from a button
 * after a confirmation; a cancelled confirmation does nothing. `understudy events
 * --follow` prints the same failover from the live stream. /metrics then parses and
 * carries the figures. Nothing else moves: the outlet keeps its primary and epoch.
 */

const SLOT = claimSlot();
const TOKEN = 'dashboard-test-token-7f3a';
const CHROMIUM = '/usr/bin/chromium';

test(
  'the dashboard shows a failover live and runs a switchover from the page',
  { timeout: 90_000, skip: !fs.existsSync(CHROMIUM) && 'chromium is not installed (.ci/run installs it)' },
  async (t) => {
    const cluster = await startCluster({ slot: SLOT, env: { UNDERSTUDY_TOKEN: TOKEN }, config: (ctx) => demoLikeConfig(ctx, { backupEvery: '3s' }) });
    t.after(() => cluster.stop());
    const call = <T>(p: string, body?: unknown) => apiCall<T>(cluster.api, TOKEN, p, body);
    const status = async () => (await call<DemoStatus>('/v1/status')).body;
    const site = (st: DemoStatus, name: string) => st.sites.find((s) => s.name === name)!;

    // Both sites serve and replicate before anything happens.
    const before = await waitUntil(
      'both sites serving and streaming',
      async () => {
        const st = await status();
        return st.sites.length === 2 && st.sites.every((s) => s.state === 'serving' && s.replication.state === 'streaming') ? st : null;
      },
      60_000,
      100,
    );
    assert.equal((await apiCall(cluster.api, null, '/v1/status')).status, 401, 'the API refuses calls without the token');

    // `understudy events --follow` from now on (the live stream).
    let followOut = '';
    const follow = spawn(process.execPath, [BIN, 'events', '--follow', '--json', '--api', cluster.api], {
      cwd: ROOT,
      env: { ...process.env, UNDERSTUDY_TOKEN: TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    follow.stdout.on('data', (d: Buffer) => {
      followOut += d.toString();
    });
    t.after(() => {
      follow.kill('SIGKILL');
    });

    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-chromium-'));
    const browser: BrowserContext = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1500, height: 1000 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    // Closed before its profile is removed (a browser still writing there makes the removal fail).
    t.after(async () => {
      await browser.close();
      fs.rmSync(userDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    });
    const page: Page = browser.pages()[0] ?? (await browser.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    let navigations = 0;
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    const external: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(cluster.api)) external.push(r.url());
    });

    await page.goto(`${cluster.api}/`);
    // The API has a token: the page asks for it (it is not in the page).
    assert.ok(!(await page.content()).includes(TOKEN), 'the token is not embedded in the page');
    await page.locator('#token-dialog[open]').waitFor({ timeout: 10_000 });
    await page.fill('#token-input', TOKEN);
    await page.click('#token-ok');

    const card = (name: string) => page.locator(`[data-site="${name}"]`);
    for (const name of ['shop', 'outlet']) {
      await waitUntil(`${name} shown serving`, async () => (await card(name).locator('[data-test=site-state]').textContent()) === 'serving', 15_000, 100);
    }
    await page.locator('[data-test=live].on').waitFor({ timeout: 10_000 });
    assert.equal((await card('shop').locator('[data-test=site-primary]').textContent())?.includes('h1'), true);
    assert.equal((await card('outlet').locator('[data-test=site-primary]').textContent())?.includes('h2'), true);
    assert.match((await page.locator('[data-host=h1] [data-test=host-power]').textContent()) ?? '', /on/);

    // A cancelled confirmation starts nothing.
    await card('outlet').locator('[data-action=failover]').click();
    await page.locator('#confirm[open]').waitFor();
    await page.click('#confirm-cancel');
    await sleep(500);

    // SIGKILL of shop's primary host (its whole process group: a crash).
    const h1 = before.hosts.find((h) => h.name === 'h1')!;
    const killedAt = Date.now();
    process.kill(-h1.pid!, 'SIGKILL');
    await page.locator('#timeline [data-kind="failover-complete"]').waitFor({ timeout: 30_000 });
    const seenAfterMs = Date.now() - killedAt;
    // Its steps appeared live too, and the card carries the figures.
    for (const step of ['hold', 'fence', 'promote', 'start', 'route']) {
      assert.ok((await page.locator(`#timeline [data-step="${step}"]`).count()) > 0, `the failover's ${step} step was shown live`);
    }
    await waitUntil('the figures on the card', async () => /\d/.test((await card('shop').locator('[data-test=fig-serving]').textContent()) ?? ''), 5000, 100);
    const detection = await card('shop').locator('[data-test=fig-detection]').textContent();
    const serving = await card('shop').locator('[data-test=fig-serving]').textContent();
    assert.match(detection ?? '', /^\d+(\.\d)? m?s$/);
    assert.match(serving ?? '', /^\d+(\.\d)? m?s$/);
    // The picture in docs/operations.md: UNDERSTUDY_DOCS_SCREENSHOT=1 writes it there; else it goes to the test's temp dir.
    const shot = process.env.UNDERSTUDY_DOCS_SCREENSHOT === '1' ? path.join(ROOT, 'docs/dashboard-failover.png') : path.join(userDir, 'dashboard-failover.png');
    await page.screenshot({ path: shot });
    assert.ok(fs.statSync(shot).size > 10_000, 'a screenshot of the page during the failover');
    const afterFailover = await status();
    assert.equal(site(afterFailover, 'shop').primary.host, 'h3', "shop failed over to its first spare on the replica's storage");
    assert.equal(site(afterFailover, 'shop').epoch, site(before, 'shop').epoch + 1);
    assert.equal(navigations, 1, 'the page was never reloaded: the failover arrived through the live stream');
    assert.ok(/h1 → h3/.test((await card('shop').locator('[data-test=site-last-failover]').textContent()) ?? ''));

    // A switchover from the page, once shop is protected again (its new replica on array-a, where h4 is).
    await waitUntil(
      'shop serving and replicating to array-a',
      async () => {
        const s = site(await status(), 'shop');
        return s.state === 'serving' && s.replication.state === 'streaming' && s.replication.to === 'array-a';
      },
      30_000,
      100,
    );
    await card('shop').locator('[data-action=switchover]').click();
    await page.locator('#confirm[open]').waitFor();
    await page.selectOption('[data-test=field-to]', 'h4');
    await page.click('#confirm-ok');
    await page.locator('[data-test=notice]', { hasText: /switchover of shop to h4: runbook #\d+ done/ }).waitFor({ timeout: 30_000 });
    await waitUntil(
      'the card shows h4',
      async () => (await card('shop').locator('[data-test=site-primary]').textContent())?.includes('h4') ?? false,
      5000,
      100,
    );
    await page.locator('#timeline [data-kind="switchover-complete"]').waitFor({ timeout: 5000 });
    const front = await http(`http://127.0.0.1:${20000 + SLOT * 100 + 20}/healthz`);
    assert.equal(front.status, 200);

    // What was not done: the outlet never moved; one failover and one switchover in all.
    const after = await status();
    assert.equal(site(after, 'shop').primary.host, 'h4');
    assert.equal(site(after, 'shop').epoch, site(before, 'shop').epoch + 2);
    assert.equal(site(after, 'outlet').primary.host, 'h2');
    assert.equal(site(after, 'outlet').epoch, site(before, 'outlet').epoch, 'the cancelled failover of the outlet did nothing');
    const { runbooks } = (await call<{ runbooks: { site: string; kind: string; status: string }[] }>('/v1/runbooks')).body;
    assert.deepEqual(
      runbooks.filter((r) => ['failover', 'switchover', 'restore'].includes(r.kind)).map((r) => `${r.site}:${r.kind}:${r.status}`),
      ['shop:failover:done', 'shop:switchover:done'],
    );
    assert.deepEqual(external, [], 'the page fetched nothing from outside the controller');
    assert.deepEqual(pageErrors, []);

    // The CLI followed the same events live, each once.
    await waitUntil('events --follow printed the switchover', async () => followOut.includes('"switchover-complete"'), 5000, 100);
    const followed = followOut
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id?: number; kind?: string; step?: { step: string } });
    const ids = followed.filter((e) => e.id !== undefined).map((e) => e.id!);
    assert.equal(new Set(ids).size, ids.length, 'no event printed twice');
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      'in order',
    );
    assert.ok(followed.some((e) => e.kind === 'failover-complete'));
    assert.ok(
      followed.some((e) => e.step?.step === 'fence'),
      'runbook steps arrive live too',
    );

    // /metrics parses (a real Prometheus text-format parser) and carries the figures.
    assert.equal((await apiCall(cluster.api, null, '/metrics')).status, 401, '/metrics needs the token too (a scraper sends it as a bearer credential)');
    // Replication from the switchover's new primary back to the old starts right after the
    // switchover: until it streams, the site has no lag to report (a moment; bounded here).
    const text = await waitUntil(
      'a replication lag for both sites in /metrics',
      async () => {
        const body = String((await apiCall<string>(cluster.api, TOKEN, '/metrics')).body);
        return samples(parseMetrics(body), 'understudy_replication_lag_ms').length === 2 ? body : null;
      },
      10_000,
      200,
    );
    const metrics = parseMetrics(text);
    const count = (name: string, labels: Record<string, string>) => histogram(text, name, labels)?.count ?? 0;
    assert.equal(count('understudy_failover_seconds', { site: 'shop' }), 1);
    assert.equal(count('understudy_detection_seconds', { site: 'shop' }), 1);
    assert.equal(count('understudy_fence_seconds', { site: 'shop', kind: 'failover' }), 1);
    assert.equal(count('understudy_switchover_held_seconds', { site: 'shop' }), 1);
    assert.equal(count('understudy_failover_seconds', { site: 'outlet' }), 0, 'no failover of the outlet');
    const failoverSum = histogram(text, 'understudy_failover_seconds', { site: 'shop' })!.sum;
    assert.ok(failoverSum > 0 && failoverSum < 30, `failover took ${failoverSum} s`);
    assert.equal(samples(metrics, 'understudy_replication_lag_ms').length, 2, 'replication lag of both sites');
    assert.ok(samples(metrics, 'understudy_requests_held', { site: 'shop' }).length === 1, 'held requests (from the director)');
    assert.ok(samples(metrics, 'understudy_requests_retried', { site: 'shop' }).length === 1, 'retried requests (from the director)');
    assert.equal(Number(samples(metrics, 'understudy_site_epoch', { site: 'outlet' })[0]?.value), site(before, 'outlet').epoch);
    t.diagnostic(`failover seen on the page ${seenAfterMs} ms after the SIGKILL; card: detected ${detection}, serving again ${serving} after`);
  },
);
