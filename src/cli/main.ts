import { Command, CommanderError } from 'commander';
import type { UnderstudyConfig } from '../config/types.ts';
import type { VaultPoint } from '../shared/contracts.ts';
import type { StatusView } from '../controller/status-view.ts';
import type { EventRecord } from '../state/state-store.ts';
import type { ApiCallOptions, ApiOptions } from './api-client.ts';

/*
 * Every command loads its own modules when it runs, not before: `--help` loads
 * only commander, `status` only a YAML parser and node:http (api-client.ts), and
 * the parts (`up`, `director`, …) the rest. A CLI call is a short process; what it
 * does not import it does not pay for.
 */

async function config(file?: string): Promise<UnderstudyConfig> {
  const [{ HANDOFF_ENV, takeHandoff }, { baseDirFor, resolveConfigPath }] = await Promise.all([import('../config/handoff.ts'), import('./config-path.ts')]);
  const path = resolveConfigPath(file);
  // The config the process that started this one compiled (handoff.ts), when it is this file as it is now.
  const handed = takeHandoff(path);
  delete process.env[HANDOFF_ENV]; // never passed on to what this process starts (apps, hooks)
  if (handed !== null && handed.baseDir === baseDirFor(path)) return handed;
  const { loadConfig } = await import('../config/load-config.ts');
  return loadConfig(path, { baseDir: baseDirFor(path) });
}

/** A part's config, with this process's calls to the other parts set up for the cluster (secret, TLS). */
async function partConfig(file?: string): Promise<UnderstudyConfig> {
  const c = await config(file);
  (await import('../shared/cluster-dispatcher.ts')).installClusterTransport(c);
  return c;
}

async function callApi<T>(opts: ApiOptions, pathAndQuery: string, call?: ApiCallOptions): Promise<T> {
  const api = await import('./api-client.ts');
  return api.callApi<T>(opts, pathAndQuery, call);
}

async function format(): Promise<typeof import('./format.ts')> {
  return import('./format.ts');
}

const program = new Command('understudy')
  .description('Keeps web shops up: fails a site over to another host on its replicated data.')
  .showHelpAfterError()
  .exitOverride();

const apiOpts = (c: Command) =>
  c.option('--api <url>', "controller API (default: UNDERSTUDY_API, else the config's controller.listen)").option('-c, --config <file>', 'config file');

program
  .command('up')
  .description('start everything in the foreground (storage processors, director, controller, hosts)')
  .option('-c, --config <file>', 'config file (default: understudy.yaml, else the bundled demo)')
  .option('--controller-on <storage>', "run the controller inside this storage system's processor instead of its own process")
  .action(async (o: { config?: string; controllerOn?: string }) => {
    const { runUp } = await import('./up-command.ts');
    process.exitCode = await runUp(await partConfig(o.config), { controllerOn: o.controllerOn });
  });

program
  .command('validate')
  .description('check a config; prints file:line:col: path: message per problem')
  .requiredOption('-c, --config <file>', 'config file')
  .action(async (o: { config: string }) => {
    const { runValidate } = await import('./validate-command.ts');
    process.exitCode = runValidate(o.config);
  });

apiOpts(program.command('status').description('sites, hosts and replication').option('--json', 'the status as JSON')).action(
  async (o: ApiOptions & { json?: boolean }) => {
    const st = await callApi<StatusView>(o, '/v1/status');
    console.log(o.json ? JSON.stringify(st, null, 2) : (await format()).formatStatus(st));
  },
);

apiOpts(
  program
    .command('events')
    .description('the event log')
    .option('--follow', 'keep printing new events and runbook steps as they happen')
    .option('--json', 'one JSON object per line'),
).action(async (o: ApiOptions & { follow?: boolean; json?: boolean }) => {
  let after = 0;
  const { formatEvent } = await format();
  const print = (events: EventRecord[]) => {
    for (const e of events) {
      console.log(o.json ? JSON.stringify(e) : formatEvent(e));
      after = e.id;
    }
  };
  // Page through the whole log (the API answers at most 1000 events a call).
  while (true) {
    const page = (await callApi<{ events: EventRecord[] }>(o, `/v1/events?after=${after}&limit=1000`)).events;
    print(page);
    if (page.length < 1000) break;
  }
  if (!o.follow) return;
  // Then the live stream (Server-Sent Events), resumed after the last event printed.
  const { followEvents } = await import('./event-follow.ts');
  await followEvents(o, after, {
    event: (e) => print([e]),
    step: (s) => {
      if (o.json) console.log(JSON.stringify({ step: s }));
      else if (s.phase !== 'begin')
        console.log(
          `${new Date(s.at).toISOString()}  ${s.site}  ${s.kind} #${s.runbook}: ${s.step} ${s.phase === 'end' ? `done${s.ms !== undefined ? ` (${s.ms} ms)` : ''}` : `failed: ${s.error ?? ''}`}`,
        );
    },
    lost: (why) => console.error(`understudy: ${why}`),
    resumed: () => console.error('understudy: events stream resumed'),
  });
});

apiOpts(
  program
    .command('failover')
    .description('unplanned move of SITE now')
    .argument('<site>')
    .option('--to <host>', 'target host')
    .option('--force', 'go on even if the old host cannot be confirmed off'),
).action(async (site: string, o: ApiOptions & { to?: string; force?: boolean }) => {
  console.error(`failing ${site} over${o.to ? ` to ${o.to}` : ''}…`);
  const r = await callApi<{ runbook: number; status: string }>(o, `/v1/sites/${encodeURIComponent(site)}/failover`, {
    body: { to: o.to, force: o.force },
    timeoutMs: 120_000,
  });
  console.log(`failover #${r.runbook}: ${r.status}`);
  if (r.status !== 'done') process.exitCode = 1;
});

apiOpts(program.command('switchover').description('planned move of SITE to HOST').argument('<site>').requiredOption('--to <host>', 'target host')).action(
  async (site: string, o: ApiOptions & { to: string }) => {
    console.error(`switching ${site} over to ${o.to}…`);
    const r = await callApi<{ runbook: number; status: string }>(o, `/v1/sites/${encodeURIComponent(site)}/switchover`, {
      body: { to: o.to },
      timeoutMs: 120_000,
    });
    console.log(`switchover #${r.runbook}: ${r.status}`);
    if (r.status !== 'done') process.exitCode = 1;
  },
);

apiOpts(program.command('backups').description('the restore points of SITE in its vault, newest first').argument('<site>').option('--json', 'as JSON')).action(
  async (site: string, o: ApiOptions & { json?: boolean }) => {
    const r = await callApi<{ vault: string; points: VaultPoint[] }>(o, `/v1/sites/${encodeURIComponent(site)}/backups`);
    if (o.json) {
      console.log(JSON.stringify(r, null, 2));
      return;
    }
    const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
    console.log(`${site}: ${r.points.length} restore point(s) in ${r.vault}`);
    // VERIFIED: ok, FAILED (not counted toward keep, skipped by a restore of the newest good one), or - (not yet).
    const verified = (p: VaultPoint) =>
      p.verification === undefined ? '-' : p.verification.ok ? 'ok' : `FAILED: ${p.verification.problem ?? 'see the vault log'}`;
    for (const p of r.points)
      console.log(
        `  ${new Date(p.takenAt).toISOString()}  epoch ${p.epoch}  ${mb(p.bytes)} (new ${mb(p.newBytes)})  ${p.files} files  ${p.id}  verified ${verified(p)}`,
      );
  },
);

apiOpts(
  program
    .command('restore')
    .description('restore SITE from its vault (newest good restore point, or the newest taken at or before --at)')
    .argument('<site>')
    .option('--at <time>', 'a time like 2026-11-25T06:00:00Z')
    .option('--to <host>', 'the host to restore onto'),
).action(async (site: string, o: ApiOptions & { at?: string; to?: string }) => {
  if (o.at && !Number.isFinite(Date.parse(o.at)))
    throw new CommanderError(1, 'understudy.badAction', `restore: --at must be a time like 2026-11-25T06:00:00Z, not "${o.at}"`);
  console.error(`restoring ${site}${o.at ? ` as of ${o.at}` : ''}${o.to ? ` onto ${o.to}` : ''}…`);
  // Progress: the runbook's journaled steps as they complete.
  const seen = new Set<number>();
  let done = false;
  const progress = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 300));
      const { runbooks } = await callApi<{
        runbooks: { id: number; kind: string; status: string; journal: { id: number; step: string; phase: string; data: Record<string, unknown> }[] }[];
      }>(o, `/v1/runbooks?site=${encodeURIComponent(site)}`).catch(() => ({ runbooks: [] }));
      const rb = runbooks.filter((r) => r.kind === 'restore').pop();
      for (const j of rb?.journal ?? []) {
        if (j.phase === 'end' && !seen.has(j.id)) {
          seen.add(j.id);
          console.error(`  ✓ ${j.step} (${String(j.data.ms ?? '?')} ms)`);
        }
      }
    }
  })();
  const r = await callApi<{ runbook: number; status: string }>(o, `/v1/sites/${encodeURIComponent(site)}/restore`, {
    body: { at: o.at, to: o.to },
    timeoutMs: 900_000,
  }).finally(() => {
    done = true;
  });
  await progress;
  console.log(`restore #${r.runbook}: ${r.status}`);
  if (r.status !== 'done') process.exitCode = 1;
});

apiOpts(
  program
    .command('drill')
    .description('rehearse a failover of SITE on a free spare, without touching the site')
    .argument('<site>')
    .option('--to <host>', 'the spare to rehearse on (default: the one a failover would take, if free)')
    .option('--front <address>', "where the drill front listens, like 127.0.0.1:9080 (default: the site's front address, any free port)")
    .option('--smoke <path>', 'the smoke request sent through the drill front', '/')
    .option('--json', 'the report as JSON'),
).action(async (site: string, o: ApiOptions & { to?: string; front?: string; smoke: string; json?: boolean }) => {
  const { formatDrillReport } = await import('./drill-report.ts');
  if (!o.json) console.error(`rehearsing a failover of ${site}${o.to ? ` on ${o.to}` : ''}…`);
  // Progress: the drill's steps from the live events stream.
  const { followEvents } = await import('./event-follow.ts');
  const ac = new AbortController();
  const progress = o.json
    ? Promise.resolve()
    : followEvents(
        o,
        Number.MAX_SAFE_INTEGER,
        {
          event: () => undefined,
          step: (s) => {
            if (s.site === site && s.kind === 'drill' && s.phase !== 'begin')
              console.error(`  ${s.phase === 'end' ? '✓' : '✗'} ${s.step}${s.ms !== undefined ? ` (${s.ms} ms)` : ''}${s.error ? `: ${s.error}` : ''}`);
          },
        },
        ac.signal,
      ).catch(() => undefined);
  try {
    const r = await callApi<import('../controller/drill-runbook.ts').DrillReport>(o, `/v1/sites/${encodeURIComponent(site)}/drill`, {
      body: { to: o.to, front: o.front, smoke: o.smoke },
      timeoutMs: 900_000,
    });
    console.log(o.json ? JSON.stringify(r, null, 2) : formatDrillReport(r));
    if (!r.ok) process.exitCode = 1;
  } finally {
    ac.abort();
    await progress;
  }
});

apiOpts(program.command('power').description("a host's relay").argument('<host>').argument('<action>', 'on, off or status')).action(
  async (host: string, action: string, o: ApiOptions) => {
    if (!['on', 'off', 'status'].includes(action))
      throw new CommanderError(1, 'understudy.badAction', `power: action must be on, off or status, not "${action}"`);
    const r =
      action === 'status'
        ? await callApi<{ power: string; pid: number | null }>(o, `/v1/hosts/${encodeURIComponent(host)}/power`)
        : await callApi<{ power: string; pid: number | null }>(o, `/v1/hosts/${encodeURIComponent(host)}/power`, { body: { action }, timeoutMs: 10_000 });
    console.log(`${host}: ${r.power}${r.pid ? ` (pid ${r.pid})` : ''}`);
  },
);

program
  .command('certs')
  .description('make a CA and a certificate per part of the config (for cluster.tls), with openssl')
  .requiredOption('-c, --config <file>', 'config file')
  .requiredOption('--out <dir>', 'where the certificates go (existing ones are kept)')
  .action(async (o: { config: string; out: string }) => {
    const { makeCerts } = await import('./certs-command.ts');
    console.log(`understudy: certificates in ${o.out}`);
    const { made, kept } = makeCerts(await config(o.config), o.out, (l) => console.log(l));
    if (kept.length > 0) console.log(`  kept: ${kept.join(', ')}`);
    console.log(
      `${made.length} made. In the config: cluster: { secret: { file: PATH }, tls: { ca: ${o.out}/ca.pem, cert: "${o.out}/{{part}}.pem", key: "${o.out}/{{part}}-key.pem" } }`,
    );
  });

// Internal commands: the processes that `up` starts; also what runs on other machines.
program
  .command('controller', { hidden: true })
  .requiredOption('-c, --config <file>')
  .option('--name <name>', 'where controllers elect a leader (controller.state.etcd): this controller, one of controller.members')
  .action(async (o: { config: string; name?: string }) => {
    const config = await partConfig(o.config);
    if (config.controller.etcd) {
      const { runClusteredController } = await import('../controller/controller-cluster.ts');
      const { hostname } = await import('node:os');
      await runClusteredController(config, o.name ?? `${hostname()}-${process.pid}`);
      return;
    }
    if (o.name !== undefined)
      throw new (await import('../shared/errors.ts')).UnderstudyError(
        'US_CONFIG_INVALID',
        '--name needs controller.state: { etcd: … }: a single controller has no name',
      );
    const { runController } = await import('./controller-command.ts');
    await runController(config);
  });
program
  .command('director')
  .description('run the built-in network director')
  .requiredOption('-c, --config <file>')
  .option('--name <name>', 'where several directors share the fronts: this director, one of director.members')
  .action(async (o: { config: string; name?: string }) => {
    const { runDirector } = await import('./director-command.ts');
    await runDirector({ config: await partConfig(o.config), ...(o.name !== undefined ? { name: o.name } : {}) });
  });
program
  .command('storage')
  .description('run a storage processor')
  .requiredOption('--name <storage>')
  .requiredOption('-c, --config <file>')
  .option('--with-controller', 'also run the controller inside this storage processor')
  .action(async (o: { name: string; config: string; withController?: boolean }) => {
    const { runStorage } = await import('./storage-command.ts');
    await runStorage({ config: await partConfig(o.config), name: o.name, withController: o.withController });
  });
program
  .command('agent')
  .description('run a host agent')
  .requiredOption('--host <host>')
  .requiredOption('-c, --config <file>')
  .action(async (o: { host: string; config: string }) => {
    const { runAgent } = await import('./agent-command.ts');
    // An agent only answers (it calls no other part): it does not load the client side of the cluster's transport.
    await runAgent(await config(o.config), o.host);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.code !== 'commander.helpDisplayed' && e.code !== 'commander.version' && e.code !== 'commander.executeSubCommandAsync') {
      if (e.code === 'understudy.badAction') console.error(`understudy: ${e.message}`);
      process.exitCode = e.exitCode || 1;
    }
  } else if ((await import('../shared/errors.ts')).isUnderstudyError(e)) {
    const problems = (e as { problems?: unknown[] }).problems;
    if (e.code === 'US_CONFIG_INVALID' && Array.isArray(problems)) console.error(e.message);
    else console.error(`understudy: ${e.message} [${e.code}]`);
    process.exitCode = 1;
  } else {
    console.error(`understudy: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
