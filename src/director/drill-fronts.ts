import http from 'node:http';
import { z } from 'zod';
import { endpointToString } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { listen, parseBody } from '../shared/http-json.ts';
import { SiteProxy, type SiteProxyOptions } from './proxy.ts';

/**
 * Drill fronts: the front a rehearsal (`understudy drill`) opens for a copy of a site
 * started on a spare, so that the copy is reached the way clients reach the site —
 * through the director's proxy — without going anywhere near the site's own front,
 * route or epoch. One per drill, named by the controller (`<site>.drill`), on the
 * address it asks for (port 0: any free port), closed when the drill ends. A drill
 * front holds little (10 requests, 2 s) and has no sync barrier or readers.
 *
 *   PUT    /v1/drills/:name  { front: { host, port }, upstream: "host:port" } → { name, front, upstream }
 *   DELETE /v1/drills/:name  → { closed: boolean }
 *   GET    /v1/drills        → { drills: [{ name, front, upstream }] }
 */
const openSchema = z
  .object({
    front: z.object({ host: z.string().min(1), port: z.number().int().min(0).max(65535) }).strict(),
    upstream: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.3.1:3000'),
  })
  .strict();
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

interface DrillFront {
  name: string;
  upstream: string;
  front: string;
  proxy: SiteProxy;
  server: http.Server;
}

export class DrillFronts {
  private readonly fronts = new Map<string, DrillFront>();

  constructor(private readonly proxyOptions: Omit<SiteProxyOptions, 'site' | 'holdMaxRequests' | 'holdTimeoutMs'>) {}

  /** Upstreams the drill fronts use (their pools must stay open). */
  upstreamsInUse(): string[] {
    return [...this.fronts.values()].map((f) => f.upstream);
  }

  list(): { name: string; front: string; upstream: string }[] {
    return [...this.fronts.values()].map((f) => ({ name: f.name, front: f.front, upstream: f.upstream }));
  }

  /** Opens (or returns, when it is already open to the same upstream) the drill front `name`. */
  async open(name: string, body: unknown): Promise<{ name: string; front: string; upstream: string }> {
    if (!NAME_RE.test(name)) throw new UnderstudyError('US_BAD_REQUEST', `"${name}" is not a drill name (letters, digits, '.', '_', '-')`);
    const b = parseBody(openSchema, body);
    const existing = this.fronts.get(name);
    if (existing && existing.upstream === b.upstream) return { name, front: existing.front, upstream: existing.upstream };
    if (existing) await this.close(name);
    const proxy = new SiteProxy({ ...this.proxyOptions, site: name, holdMaxRequests: 10, holdTimeoutMs: 2000 });
    proxy.setRoute({ site: name, epoch: 1, primary: b.upstream, readers: [] });
    const server = http.createServer(proxy.handle);
    server.keepAliveTimeout = 5000;
    let addr;
    try {
      addr = await listen(server, b.front.host, b.front.port);
    } catch (e) {
      proxy.stop();
      throw e;
    }
    const front = endpointToString({ host: addr.address, port: addr.port });
    this.fronts.set(name, { name, upstream: b.upstream, front, proxy, server });
    return { name, front, upstream: b.upstream };
  }

  /** Closes the drill front `name` (idempotent): its listener and every connection to it. */
  async close(name: string): Promise<{ closed: boolean }> {
    const f = this.fronts.get(name);
    if (!f) return { closed: false };
    this.fronts.delete(name);
    f.proxy.stop();
    await new Promise<void>((r) => {
      f.server.close(() => r());
      f.server.closeAllConnections();
    });
    return { closed: true };
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.fronts.keys()].map((n) => this.close(n)));
  }
}
