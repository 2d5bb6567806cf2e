import type http from 'node:http';
import { z } from 'zod';
import type { Controller } from '../controller/controller.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { isLoopbackAddress, parseEndpoint } from '../config/endpoint.ts';
import { JsonRouter, createJsonServer, listen, parseBody } from '../shared/http-json.ts';
import { bearerOf, partSecurity, readSecretRef, secretMatches } from '../shared/cluster-transport.ts';
import { createHash } from 'node:crypto';
import { serveDashboardFile } from './dashboard-assets.ts';
import { serveEventStream } from './event-stream.ts';
import { createMetrics, type MetricsSources } from './metrics.ts';
import type { RunbookView } from '../state/state-store.ts';
import type { Notifier } from '../notify/notifier.ts';

const FailoverBody = z.object({ to: z.string().optional(), force: z.boolean().optional() }).strict();
const SwitchoverBody = z.object({ to: z.string().min(1) }).strict();
const RestoreBody = z.object({ at: z.string().optional(), to: z.string().optional() }).strict();
const DrillBody = z
  .object({
    to: z.string().min(1).optional(),
    front: z
      .string()
      .refine((v) => parseEndpoint(v) !== undefined, 'must be an address like 127.0.0.1:9080')
      .optional(),
    smoke: z
      .string()
      .regex(/^\/[^\s]*$/, 'must be a URL path like / or /api/products')
      .optional(),
  })
  .strict();
const PowerBody = z.object({ action: z.enum(['on', 'off']) }).strict();
const SignalBody = z.object({ kind: z.literal('conn-error'), site: z.string(), upstream: z.string(), at: z.number(), error: z.string() });

/** Where controllers elect a leader: what this one is now (controller-cluster.ts). */
export interface ControllerRole {
  name: string;
  role: 'leader' | 'follower' | 'unknown';
  /** The leading controller's name, and its API address when `controller.members` names it. */
  leader: string | null;
  leaderApi: string | null;
  /** The leader key's fencing token (the term), when known. */
  token: number | null;
  /** Since when etcd has not answered this controller (epoch ms), and why; null while it answers. */
  storeUnavailable: { since: number; error: string } | null;
}

/** The parts the API shows besides the controller itself. */
export interface ApiParts {
  notifier?: Notifier;
  /** Where controllers elect a leader: this controller's role. A follower serves reads and refuses every command. */
  role?: () => ControllerRole;
  /** False: the server is returned without listening; its owner hands it requests (controller-cluster.ts). @default true */
  listen?: boolean;
}

/** Failover figures the dashboard and `status --json` show per site (from its newest `failover-complete` event). */
const LAST_FAILOVER_FIELDS = [
  'from',
  'to',
  'epoch',
  'reason',
  'detectionMs',
  'servingAgainMs',
  'replicationLagMsAtFailure',
  'detectedAt',
  'servingAgainAt',
] as const;

/**
 * The controller's HTTP API: status, events (and their live stream), runbooks,
 * failover, switchover, restore, power, notifications, signals, /metrics, and the
 * dashboard at `/`. Credentials: the operators' token (UNDERSTUDY_TOKEN, else
 * `controller.token`) or the cluster secret (the other parts' calls). When either is
 * configured, every call but /healthz and the dashboard's static files needs
 * `Authorization: Bearer <token or secret>`, compared in constant time and never
 * logged; the dashboard asks the operator for the token. Without a token the API
 * listens on loopback only. A signal only makes the controller probe a primary at
 * once: it can trigger no action by itself.
 */
export async function startApiServer(controller: Controller, parts: ApiParts = {}): Promise<http.Server> {
  const config = controller.config;
  const tokenText = process.env.UNDERSTUDY_TOKEN || (config.controller.token ? readSecretRef(config.controller.token, 'controller.token') : null);
  const l = config.controller.listen;
  if (!tokenText && !isLoopbackAddress(l.host)) {
    throw new UnderstudyError(
      'US_UNAUTHORIZED',
      `the controller API would listen on ${l.host}, beyond loopback, without a token: set controller.token: { file: PATH } (or UNDERSTUDY_TOKEN), or listen on 127.0.0.1`,
    );
  }
  const security = partSecurity(config, 'controller');
  const tokenDigest = tokenText ? createHash('sha256').update(tokenText).digest() : null;
  const sources: MetricsSources = parts.notifier ? { notify: () => parts.notifier!.stats() } : {};
  const registry = createMetrics(controller, sources);
  const auth = (headers: http.IncomingHttpHeaders): void => {
    if (!tokenDigest && !security.secretDigest) return;
    const presented = bearerOf(headers);
    if ((tokenDigest && secretMatches(presented, tokenDigest)) || (security.secretDigest && secretMatches(presented, security.secretDigest))) return;
    throw new UnderstudyError(
      'US_UNAUTHORIZED',
      presented === null
        ? "the controller refuses a call without credentials: set UNDERSTUDY_TOKEN to the controller's token"
        : "wrong token: set UNDERSTUDY_TOKEN to the controller's token (controller.token)",
    );
  };
  /** A follower serves reads; a command goes to the leader, which this answer names. */
  const leads = (): void => {
    const r = parts.role?.();
    if (!r || r.role === 'leader') return;
    throw new UnderstudyError(
      'US_NOT_LEADER',
      r.leader
        ? `this controller (${r.name}) follows: send commands to the leader, ${r.leader}${r.leaderApi ? ` at ${r.leaderApi}` : ''}`
        : `this controller (${r.name}) follows and no controller leads now${r.storeUnavailable ? `: etcd has not answered since ${new Date(r.storeUnavailable.since).toISOString()} (${r.storeUnavailable.error})` : ''}; try again when one leads`,
      { leader: r.leader, leaderApi: r.leaderApi },
    );
  };
  const router = new JsonRouter()
    .on('GET', '/healthz', () => ({ ok: true, pid: process.pid }))
    .on('GET', '/', (_req, res) => serveDashboardFile('index.html', res))
    .on('GET', '/dashboard/:file', ({ params }, res) => serveDashboardFile(params.file!, res))
    .on('GET', '/v1/status', async ({ headers }) => {
      auth(headers);
      const st = await controller.status();
      return {
        ...st,
        ...(parts.role ? { controller: parts.role() } : {}),
        sites: st.sites.map((s) => {
          const e = controller.store.latestEvent('failover-complete', s.name);
          return e
            ? {
                ...s,
                lastFailover: { at: e.at, ...Object.fromEntries(LAST_FAILOVER_FIELDS.filter((k) => e.data[k] !== undefined).map((k) => [k, e.data[k]])) },
              }
            : s;
        }),
      };
    })
    .on('GET', '/v1/events/stream', ({ headers, query, raw }, res) => {
      auth(headers);
      serveEventStream(controller.store, raw, res, query);
    })
    .on('GET', '/v1/notify', ({ headers }) => {
      auth(headers);
      return { targets: parts.notifier?.stats() ?? [] };
    })
    .on('GET', '/v1/events', ({ headers, query }) => {
      auth(headers);
      const events = controller.store.listEvents({
        afterId: Number(query.get('after') ?? 0),
        site: query.get('site') ?? undefined,
        limit: Math.min(Number(query.get('limit') ?? 1000), 5000),
      });
      return { events };
    })
    .on('GET', '/v1/runbooks', ({ headers, query }) => {
      auth(headers);
      const site = query.get('site') ?? undefined;
      const runbooks: RunbookView[] = controller.store.listRunbooks(site).map((r) => ({ ...r, journal: controller.store.journalOf(r.id) }));
      return { runbooks };
    })
    .on('POST', '/v1/sites/:site/failover', ({ headers, params, body }) => {
      auth(headers);
      leads();
      return controller.manualFailover(params.site!, parseBody(FailoverBody, body ?? {}));
    })
    .on('POST', '/v1/sites/:site/switchover', ({ headers, params, body }) => {
      auth(headers);
      leads();
      return controller.switchover(params.site!, parseBody(SwitchoverBody, body).to);
    })
    .on('POST', '/v1/sites/:site/restore', ({ headers, params, body }) => {
      auth(headers);
      leads();
      const b = parseBody(RestoreBody, body ?? {});
      return controller.restore(params.site!, { ...(b.at ? { at: Date.parse(b.at) } : {}), ...(b.to ? { to: b.to } : {}) });
    })
    .on('POST', '/v1/sites/:site/drill', ({ headers, params, body }) => {
      auth(headers);
      leads();
      const b = parseBody(DrillBody, body ?? {});
      return controller.drills.run(params.site!, {
        ...(b.to ? { to: b.to } : {}),
        ...(b.front ? { front: parseEndpoint(b.front)! } : {}),
        ...(b.smoke ? { smokePath: b.smoke } : {}),
      });
    })
    .on('GET', '/v1/sites/:site/backups', ({ headers, params }) => {
      auth(headers);
      return controller.backups(params.site!);
    })
    .on('GET', '/v1/hosts/:host/power', ({ headers, params }) => {
      auth(headers);
      return controller.power(params.host!, 'status');
    })
    .on('POST', '/v1/hosts/:host/power', ({ headers, params, body }) => {
      auth(headers);
      leads();
      return controller.power(params.host!, parseBody(PowerBody, body).action);
    })
    .on('POST', '/v1/signals', ({ headers, body }) => {
      auth(headers);
      leads();
      controller.signal(parseBody(SignalBody, body));
      return { ok: true };
    })
    .on('GET', '/metrics', async ({ headers }, res) => {
      auth(headers);
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(text);
    });
  const server = createJsonServer(router, null, { security: { secretDigest: null, tls: security.tls }, part: 'the controller' });
  if (parts.listen !== false) await listen(server, l.host, l.port);
  return server;
}
