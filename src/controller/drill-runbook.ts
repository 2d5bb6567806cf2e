import path from 'node:path';
import { request } from 'undici';
import { HttpProbe } from '../monitor/http-probe.ts';
import type { VerificationProblem } from '../shared/contracts.ts';
import { callJson } from '../shared/http-client.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { JournaledRunbook } from './journaled-runbook.ts';
import type { RunbookDeps } from './runbook-journal.ts';
import { appEndpoint, probeUrl, renderedTransform, startRequest } from './site-facts.ts';
import { sleep } from './timing.ts';

/** What a drill is given and what its steps find; persisted with the runbook. */
export interface DrillData extends Record<string, unknown> {
  /** The spare the drill runs on, and the storage system its copy is put on. */
  host: string;
  storage: string;
  /** The site as it was when the drill started (none of it is touched). */
  primary: string;
  epoch: number;
  replicaStorage: string;
  /** Where the drill front listens: the site's front host, any free port, unless asked. */
  front: { host: string; port: number };
  /** The smoke request's path, sent through the drill front. @default '/' */
  smokePath: string;
  startedAt: number;
  /** The host was off and the drill powered it on (so it powers it off again). */
  poweredOn?: boolean;
  copy?: { takenAt: number; bytes: number; files: number; databases: string[]; problems: VerificationProblem[]; heldMs: number; lastAppliedAt: number | null };
  /** At most this far behind the primary when the copy was taken (ms); null when the lag was unknown. */
  dataAgeMs?: number | null;
  frontAddress?: string;
  smoke?: { status: number; ms: number; bytes: number };
  /** Why the drill stopped before the smoke request answered. */
  failure?: string;
  /** A failover or another runbook started: the drill gave way. */
  preempted?: string;
  /** What teardown could not remove (empty: nothing left behind). */
  leftBehind?: string[];
}

/** The report `understudy drill` prints (event `drill-complete` / `drill-failed`). */
export interface DrillReport {
  runbook: number;
  site: string;
  ok: boolean;
  verdict: string;
  host: string;
  storage: string;
  front: string | null;
  dataAgeMs: number | null;
  copy: DrillData['copy'] | null;
  smoke: DrillData['smoke'] | null;
  steps: { step: string; ms: number }[];
  totalMs: number | null;
  poweredOff: boolean;
  leftBehind: string[];
  failure: string | null;
}

/** The name a drill runs under: on the agent (its app) and in the director (its front). */
export function drillName(site: string): string {
  return `${site}.drill`;
}

export function drillCopyId(site: string, runbook: number): string {
  return `${site}-drill-${runbook}`;
}

/**
 * A rehearsal of a failover (`understudy drill SITE [--to HOST]`), journaled like the
 * other runbooks: power the spare on (if off), copy the replica at one moment onto the
 * spare's storage system (copy, with the WAL folded and every database quick_checked
 * as a promotion would), fit the copy to the spare (the site's transform), start the
 * app there on the copy, wait for its probe, open a drill front in the director, send
 * a smoke request through it; then always tear down: close the front, stop the app,
 * power the spare off (if the drill powered it on), remove the copy, and check that
 * nothing is left. It never touches the primary, the replica (only held still while
 * its files are copied), the site's route, front or epoch.
 *
 * A real failover or any runbook that starts meanwhile preempts it (`preempt()`): it
 * stops at the next step, tears down, and leaves the spare powered so that the runbook
 * can take it at once. A controller that dies mid-drill runs only the teardown when
 * it comes back (the journal says what was done).
 */
export class DrillRunbook extends JournaledRunbook<DrillData> {
  private preemptedBy: string | null = null;

  preempt(why: string): void {
    this.preemptedBy ??= why;
  }

  private checkPreempted(): void {
    if (this.preemptedBy) throw new UnderstudyError('US_DRILL_REFUSED', `preempted: ${this.preemptedBy}`);
  }

  async run(): Promise<void> {
    await this.rehearse();
  }

  /** Runs the drill (or, `resumed` after a controller restart, only its teardown) and returns its report. */
  async rehearse(resumed = false): Promise<DrillReport> {
    const { store } = this.deps;
    const site = this.rb.site;
    const d = this.journal.data;
    const step = async (name: string, fn: () => Promise<unknown>) => {
      this.checkPreempted();
      await this.journal.step(name, fn);
    };
    try {
      if (resumed) throw new UnderstudyError('US_DRILL_REFUSED', 'the controller restarted during the drill');
      await step('power-on', () => this.powerOn());
      await step('copy', () => this.copy());
      await step('transform', () =>
        this.call(this.storageUrl(d.storage), `/v1/drills/${this.copyId}/transform`, { rules: renderedTransform(this.host, this.siteCfg) }),
      );
      await step('start', () => this.startApp());
      await step('wait-healthy', () => this.waitHealthy());
      await step('front', async () => {
        const r = await this.call<{ front: string }>(
          this.deps.clients.directorUrl(),
          `/v1/drills/${drillName(site)}`,
          { front: d.front, upstream: appEndpoint(this.host, this.siteCfg) },
          'PUT',
        );
        d.frontAddress = r.front;
        return { front: r.front };
      });
      await step('smoke', () => this.smoke());
    } catch (e) {
      d.failure = (e as Error).message;
      if (this.preemptedBy) d.preempted = this.preemptedBy;
    }
    await this.journal
      .step('teardown', () => this.teardown())
      .catch((e: Error) => {
        d.leftBehind = [...(d.leftBehind ?? []), `teardown failed: ${e.message}`];
      });
    const report = this.report();
    await this.journal.step('record', async () => {
      store.addEvent({
        site,
        host: d.host,
        kind: report.ok ? 'drill-complete' : 'drill-failed',
        message: `${site}: drill #${this.rb.id} on ${d.host} (${d.storage}): ${report.verdict}`,
        data: { ...report },
      });
    });
    store.finishRunbook(this.rb.id, report.ok ? 'done' : 'failed');
    return report;
  }

  private get siteCfg() {
    return this.deps.config.sites[this.rb.site]!;
  }
  private get host() {
    return this.deps.config.hosts[this.journal.data.host]!;
  }
  private get copyId(): string {
    return drillCopyId(this.rb.site, this.rb.id);
  }
  private storageUrl(storage: string): string {
    return this.deps.clients.storageUrl(storage);
  }

  private call<T = unknown>(base: string, p: string, body?: unknown, method?: string, timeoutMs = 30_000): Promise<T> {
    return callJson<T>(`${base}${p}`, { ...(body === undefined ? {} : { body }), ...(method ? { method } : {}), timeoutMs });
  }

  private async powerOn(): Promise<unknown> {
    const d = this.journal.data;
    const { relay, clients, store } = this.deps;
    if (relay.status(d.host).power === 'off') {
      d.poweredOn = true;
      await relay.on(d.host);
      store.addEvent({
        site: this.rb.site,
        host: d.host,
        kind: 'power-on',
        message: `${d.host} powered on for drill #${this.rb.id} of ${this.rb.site}`,
        data: { runbook: this.rb.id },
      });
    }
    await this.until(
      () =>
        clients.agentStatus(d.host, 300).then(
          () => true,
          () => false,
        ),
      15_000,
      `the agent of ${d.host}`,
    );
    return { poweredOn: !!d.poweredOn };
  }

  /** The replica at one moment, onto the spare's storage; with an upper bound of its data age. */
  private async copy(): Promise<unknown> {
    const d = this.journal.data;
    const { config, clients } = this.deps;
    const primaryStorage = config.hosts[d.primary]!.storage;
    const askedAt = Date.now();
    const before = await clients.storageStatus(primaryStorage, 2000).catch(() => null);
    const rep = before?.volumes.find((v) => v.site === this.rb.site)?.replication;
    const snap = await this.call<NonNullable<DrillData['copy']>>(
      this.storageUrl(d.replicaStorage),
      `/v1/volumes/${this.rb.site}/drill-snapshot`,
      { id: this.copyId },
      undefined,
      120_000,
    );
    // The replica held everything committed before (askedAt − lag) when the primary's storage answered, so at the copy it was at most this far behind.
    d.dataAgeMs = rep && rep.state === 'streaming' ? Math.max(0, snap.takenAt - askedAt + rep.lagMs) : null;
    d.copy = {
      takenAt: snap.takenAt,
      bytes: snap.bytes,
      files: snap.files,
      databases: snap.databases,
      problems: snap.problems,
      heldMs: snap.heldMs,
      lastAppliedAt: snap.lastAppliedAt,
    };
    await this.call(
      this.storageUrl(d.storage),
      `/v1/drills/${this.copyId}/fetch`,
      { from: { name: d.replicaStorage, url: this.storageUrl(d.replicaStorage) } },
      undefined,
      600_000,
    );
    if (snap.problems.length > 0) {
      throw new UnderstudyError(
        'US_REPLICA_CORRUPT',
        `the copy of the replica fails verification (${snap.problems
          .slice(0, 3)
          .map((p) => `${p.file}: ${p.detail ?? p.kind}`)
          .join('; ')}): a failover would refuse to promote it`,
      );
    }
    return { bytes: snap.bytes, dataAgeMs: d.dataAgeMs, heldMs: snap.heldMs };
  }

  private async startApp(): Promise<unknown> {
    const d = this.journal.data;
    const { config, clients } = this.deps;
    const req = startRequest(config, this.host, this.siteCfg, d.epoch);
    req.dataDir = path.join(config.storage[d.storage]!.path, 'drills', this.copyId);
    req.env = { ...req.env, UNDERSTUDY_DRILL: '1' };
    return clients.startApp(d.host, drillName(this.rb.site), req).then(() => ({ dataDir: req.dataDir }));
  }

  private async waitHealthy(): Promise<unknown> {
    const probe = new HttpProbe(probeUrl(this.host, this.siteCfg), this.siteCfg.health.probe.timeoutMs);
    try {
      await this.until(async () => (await probe.run()).ok, 30_000, `${this.rb.site}'s copy to answer its probe on ${appEndpoint(this.host, this.siteCfg)}`);
    } finally {
      await probe.close();
    }
    return {};
  }

  private async smoke(): Promise<unknown> {
    const d = this.journal.data;
    const t0 = Date.now();
    const res = await request(`http://${d.frontAddress}${d.smokePath}`, { method: 'GET', headersTimeout: 10_000, bodyTimeout: 10_000 });
    const body = await res.body.arrayBuffer();
    d.smoke = { status: res.statusCode, ms: Date.now() - t0, bytes: body.byteLength };
    if (res.statusCode >= 400)
      throw new UnderstudyError('US_UPSTREAM_FAILED', `the smoke request GET ${d.smokePath} through the drill front answered ${res.statusCode}`);
    return d.smoke;
  }

  /** Every part best effort and idempotent; then what is still there is listed. */
  private async teardown(): Promise<unknown> {
    const d = this.journal.data;
    const { relay, clients, store } = this.deps;
    const left: string[] = [];
    await this.call(clients.directorUrl(), `/v1/drills/${drillName(this.rb.site)}`, undefined, 'DELETE', 5000).catch((e: Error) =>
      left.push(`drill front: ${e.message}`),
    );
    if (relay.status(d.host).power === 'on')
      await clients.stopApp(d.host, drillName(this.rb.site)).catch((e: Error) => left.push(`app on ${d.host}: ${e.message}`));
    // Preempted: the spare stays powered, so that the runbook that needs it has it at once.
    const poweredOff = !!d.poweredOn && !this.preemptedBy && !d.preempted;
    if (poweredOff) {
      await relay.off(d.host).then(
        () =>
          store.addEvent({
            site: this.rb.site,
            host: d.host,
            kind: 'power-off',
            message: `${d.host} powered off again after drill #${this.rb.id} of ${this.rb.site}`,
            data: { runbook: this.rb.id },
          }),
        (e: Error) => left.push(`power of ${d.host}: ${e.message}`),
      );
    }
    for (const storage of new Set([d.storage, d.replicaStorage])) {
      await this.call(this.storageUrl(storage), `/v1/drills/${this.copyId}`, undefined, 'DELETE', 30_000).catch((e: Error) =>
        left.push(`copy on ${storage}: ${e.message}`),
      );
    }
    // Checked, not assumed.
    for (const storage of new Set([d.storage, d.replicaStorage])) {
      const l = await this.call<{ copies: { id: string }[]; snapshots: { id: string }[] }>(
        this.storageUrl(storage),
        '/v1/drills',
        undefined,
        undefined,
        5000,
      ).catch(() => null);
      if (l && [...l.copies, ...l.snapshots].some((c) => c.id === this.copyId)) left.push(`copy ${this.copyId} still on ${storage}`);
    }
    const fronts = await this.call<{ drills: { name: string }[] }>(clients.directorUrl(), '/v1/drills', undefined, undefined, 5000).catch(() => null);
    if (fronts?.drills.some((f) => f.name === drillName(this.rb.site))) left.push('drill front still open');
    if (poweredOff && relay.status(d.host).power !== 'off') left.push(`${d.host} still powered`);
    d.leftBehind = [...(d.leftBehind ?? []), ...left];
    return { poweredOff, leftBehind: d.leftBehind };
  }

  private report(): DrillReport {
    const d = this.journal.data;
    const journal = this.deps.store.journalOf(this.rb.id).filter((j) => j.phase === 'end' && typeof j.data.ms === 'number');
    const steps = journal.map((j) => ({ step: j.step, ms: j.data.ms as number }));
    const ok = !d.failure && !!d.smoke && d.smoke.status < 400 && (d.leftBehind ?? []).length === 0;
    const serving = steps.filter((s) => ['copy', 'transform', 'start', 'wait-healthy', 'front', 'smoke'].includes(s.step)).reduce((a, s) => a + s.ms, 0);
    const teardown = journal.find((j) => j.step === 'teardown');
    const age = d.dataAgeMs === undefined || d.dataAgeMs === null ? 'unknown' : `≤${d.dataAgeMs} ms`;
    const verdict = ok
      ? `a failover would work: the copy of the replica (${age} behind the primary, ${(d.copy!.bytes / 1048576).toFixed(1)} MiB) verified, started and answered its probe and GET ${d.smokePath} (${d.smoke!.status}) through the drill front ${d.frontAddress} in ${serving} ms; nothing left behind`
      : `a failover would NOT be shown to work: ${d.preempted ? `the drill gave way (${d.preempted})` : (d.failure ?? `left behind: ${(d.leftBehind ?? []).join('; ')}`)}${(d.leftBehind ?? []).length ? `; left behind: ${d.leftBehind!.join('; ')}` : ''}`;
    return {
      runbook: this.rb.id,
      site: this.rb.site,
      ok,
      verdict,
      host: d.host,
      storage: d.storage,
      front: d.frontAddress ?? null,
      dataAgeMs: d.dataAgeMs ?? null,
      copy: d.copy ?? null,
      smoke: d.smoke ?? null,
      steps,
      totalMs: ok ? serving : null,
      poweredOff: teardown?.data.poweredOff === true,
      leftBehind: d.leftBehind ?? [],
      failure: d.failure ?? null,
    };
  }

  /** waitFor that gives way to a preemption at once. */
  private async until(fn: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      this.checkPreempted();
      if (await fn().catch(() => false)) return;
      if (Date.now() > deadline) throw new UnderstudyError('US_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(20);
    }
  }
}

export type { RunbookDeps };
