import { UnderstudyError } from '../shared/errors.ts';
import { JsonRouter } from '../shared/http-json.ts';
import type { DirectorMetrics } from './metrics.ts';
import type { DrillFronts } from './drill-fronts.ts';
import { parseRouteTable, type RouteStore } from './route-table.ts';
import type { DirectorSiteStats } from './upstream-stats.ts';
import type { FencingView } from '../shared/contracts.ts';

/**
 * The director's admin API, on config.director.listen. Only the controller writes
 * to it. Loopback by default; it has no token of its own yet.
 *
 * | request | answer |
 * |---|---|
 * | `PUT /v1/routes/:site` RouteTable | 200 the route now in force; 409 US_STALE_EPOCH if its epoch is lower; 400 / 404 on bad input |
 * | `GET /v1/routes` | `{ routes: RouteTable[] }` (sites that have received a route) |
 * | `GET /v1/routes/:site` | the site's RouteTable, or 404 |
 * | `GET /v1/stats` | `{ sites: SiteStats[], fencing? }` (with the director's extra counters; `fencing` once a token was seen) |
 * | `GET /metrics` | Prometheus text format |
 * | `GET /healthz` | `{ ok: true }` |
 * | `GET /v1/ready` | 200 `{ ready: true }` once it holds a route (from the controller, since it started) for every site; else 503 US_DIRECTOR_NOT_READY. What a VRRP check (keepalived's `track_script`) asks before this director takes the fronts |
 * | `PUT/DELETE /v1/drills/:name`, `GET /v1/drills` | rehearsal fronts (drill-fronts.ts) |
 */
export function adminRouter(deps: {
  routes: RouteStore;
  stats: () => DirectorSiteStats[];
  metrics: DirectorMetrics;
  drills?: DrillFronts;
  /** The fencing gate's report (shared/fencing.ts), with the stats: the leader records refusals as events. */
  fencing?: () => FencingView | null;
}): JsonRouter {
  const { routes, stats, metrics, drills, fencing } = deps;
  const router = new JsonRouter();
  if (drills) {
    router
      .on('PUT', '/v1/drills/:name', (req) => drills.open(req.params.name!, req.body))
      .on('DELETE', '/v1/drills/:name', (req) => drills.close(req.params.name!))
      .on('GET', '/v1/drills', () => ({ drills: drills.list() }));
  }
  return router
    .on('PUT', '/v1/routes/:site', (req) => routes.set(parseRouteTable(req.params.site!, req.body)))
    .on('GET', '/v1/routes', () => ({ routes: routes.list() }))
    .on('GET', '/v1/routes/:site', (req) => {
      const r = routes.get(req.params.site!);
      if (r === null) throw new UnderstudyError('US_NOT_FOUND', `no route for site "${req.params.site!}" yet`);
      return r;
    })
    .on('GET', '/v1/stats', () => {
      const f = fencing?.() ?? null;
      return { sites: stats(), ...(f ? { fencing: f } : {}) };
    })
    .on('GET', '/healthz', () => ({ ok: true }))
    .on('GET', '/v1/ready', () => {
      // A director that (re)started serves a front only once the controller gave it every site's route: never at an old epoch.
      const missing = routes.sites().filter((s) => routes.get(s) === null);
      if (missing.length > 0)
        throw new UnderstudyError(
          'US_DIRECTOR_NOT_READY',
          `this director has no route yet for ${missing.join(', ')}: the controller sends every route within its next reconcile (about a second)`,
        );
      return { ready: true };
    })
    .on('GET', '/metrics', async (_req, res) => {
      const text = await metrics.text();
      res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
}
