import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import * as v from 'valibot';
import type { UnderstudyConfig } from '../config/types.ts';
import type { AgentStatus, StartAppRequest } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { JsonRouter, createJsonServer, listen } from '../shared/http-json.ts';
import { AppProcess } from './app-process.ts';
import { partSecurity } from '../shared/cluster-transport.ts';
import { FencingGate } from '../shared/fencing.ts';
import { assertPortFree } from './port-check.ts';

/*
 * The agent validates with valibot, not zod as the other parts do: a cold standby's
 * agent starts in the middle of a failover, and loading zod was a large part of that
 * start; valibot loads a fraction of it (`npm run bench:agent` prints an agent's start).
 */
const StartAppSchema = v.object({
  epoch: v.pipe(v.number(), v.integer(), v.minValue(0)),
  command: v.pipe(v.array(v.string()), v.minLength(1)),
  cwd: v.string(),
  dataDir: v.string(),
  env: v.record(v.string(), v.string()),
  mode: v.picklist(['rw', 'ro']),
  listen: v.optional(v.object({ address: v.string(), port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)) })),
});

/** A start request, validated; US_BAD_REQUEST names each field that is wrong (as parseBody does for the other parts). */
function parseStartApp(body: unknown): StartAppRequest {
  const r = v.safeParse(StartAppSchema, body);
  if (r.success) return r.output;
  const msg = r.issues.map((i) => `${(i.path ?? []).map((p) => String(p.key)).join('.') || '(body)'}: ${i.message}`).join('; ');
  throw new UnderstudyError('US_BAD_REQUEST', msg);
}

/**
 * The host agent: the part of Understudy that runs on a host. It starts and stops
 * the site's application with DATA_DIR = the site's volume on the storage system
 * the host is attached to, and reports the application's state. It decides
 * nothing: the controller tells it what to run.
 */
export class HostAgent {
  private readonly apps = new Map<string, AppProcess>();
  private server: http.Server | null = null;
  /** Refuses commands of a controller that no longer leads (fencing.ts); its counts are in the status. */
  private fencing: FencingGate | null = null;

  constructor(
    private readonly config: UnderstudyConfig,
    private readonly host: string,
    private readonly logDir: string,
  ) {
    if (!config.hosts[host]) throw new UnderstudyError('US_NOT_FOUND', `unknown host ${host}: it is not under hosts: in ${config.file}`);
    fs.mkdirSync(logDir, { recursive: true });
  }

  status(): AgentStatus {
    const fencing = this.fencing?.view() ?? null;
    return { host: this.host, pid: process.pid, pgid: process.pid, sites: [...this.apps.values()].map((a) => a.status()), ...(fencing ? { fencing } : {}) };
  }

  async start(): Promise<void> {
    const h = this.config.hosts[this.host]!;
    const router = new JsonRouter()
      .on('GET', '/healthz', () => ({ ok: true, host: this.host }))
      .on('GET', '/v1/status', () => this.status())
      .on('PUT', '/v1/sites/:site', async ({ params, body }) => this.startApp(params.site!, parseStartApp(body)))
      .on('DELETE', '/v1/sites/:site', async ({ params }) => {
        await this.apps.get(params.site!)?.stop();
        return this.status();
      });
    const fencing = (this.fencing = new FencingGate(`the agent of ${this.host}`, null, (token, highest, req) =>
      process.stderr.write(
        `${JSON.stringify({ level: 'warn', host: this.host, token, highest, method: req.method, url: req.url, msg: 'refused a command from a controller that no longer leads (lower fencing token)' })}\n`,
      ),
    ));
    this.server = createJsonServer(router, null, { security: partSecurity(this.config, this.host), part: `the agent of ${this.host}`, fencing });
    await listen(this.server, h.address, h.agentPort);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.apps.values()].map((a) => a.stop()));
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server?.closeAllConnections();
  }

  private async startApp(site: string, req: StartAppRequest): Promise<AgentStatus> {
    let app = this.apps.get(site);
    if (app?.isRunning()) {
      if (app.epoch === req.epoch) return this.status();
      throw new UnderstudyError('US_STALE_EPOCH', `site ${site} already runs on ${this.host} at epoch ${app.epoch}; stop it first`);
    }
    // Checked before the app starts, so that the cause is named (the app itself would
    // only log EADDRINUSE and exit, or, worse, bind elsewhere and never be reached).
    if (req.listen) await assertPortFree(this.host, site, req.listen);
    if (app?.isRunning()) return this.status(); // a concurrent identical start won the race
    if (!app) {
      app = new AppProcess(site, path.join(this.logDir, `${this.host}-${site}.log`));
      this.apps.set(site, app);
    }
    app.start(req);
    return this.status();
  }
}
