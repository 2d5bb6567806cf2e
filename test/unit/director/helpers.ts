import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { Agent, request } from 'undici';
import type { UnderstudyConfig } from '../../../src/config/types.ts';
import type { RouteTable } from '../../../src/shared/contracts.ts';
import { Director } from '../../../src/director/director.ts';
import { silentLogger } from '../../../src/director/logger.ts';

/**
 * Test fixtures for the director: hand-built configs on port 0, tiny upstream
 * apps that say who served them, a fake controller, and an HTTP client. Every
 * fixture registers its own cleanup with `t.after`, so a failing test still
 * closes what it opened.
 */

export function makeConfig(opts: { sites?: string[]; holdMaxRequests?: number; holdTimeoutMs?: number } = {}): UnderstudyConfig {
  const sites = opts.sites ?? ['shop'];
  const probe = { path: '/healthz', everyMs: 200, timeoutMs: 500, fall: 2, rise: 2 };
  return {
    file: '/dev/null',
    baseDir: process.cwd(),
    controller: {
      listen: { host: '127.0.0.1', port: 0 },
      stateDir: '/tmp/unused',
      etcd: null,
      members: {},
      eventsKeep: 20_000,
      failover: { cooldownMs: 0, flapWindowMs: 0, flapBackoffMs: 0, drainTimeoutMs: 0 },
    },
    director: { listen: { host: '127.0.0.1', port: 0 }, members: {}, holdMaxRequests: opts.holdMaxRequests ?? 1000, holdTimeoutMs: opts.holdTimeoutMs ?? 5000 },
    storage: {},
    hosts: {},
    pools: {},
    sites: Object.fromEntries(
      sites.map((name) => [
        name,
        {
          name,
          front: { host: '127.0.0.1', port: 0 },
          app: { command: ['true'], port: 3000, env: {} },
          primary: 'h1',
          standby: [],
          priority: 0,
          volume: { replication: 'sync' as const, readonly: [] },
          transform: [],
          health: { probe, malfunction: { errorRate: 0.2, windowMs: 5000 }, performance: { p95Ms: 300, windowMs: 10_000 } },
          scale: { max: 1, cooldownMs: 30_000 },
        },
      ]),
    ),
  };
}

export type UpstreamMode =
  /** Answers 200 with JSON { servedBy, method, url, body, headers }. */
  | 'ok'
  /** Reads the whole request, then destroys the socket without answering. */
  | 'destroy-after-read';

export interface Upstream {
  name: string;
  /** host:port, as a route names it */
  addr: string;
  server: http.Server;
  mode: UpstreamMode;
  delayMs: number;
  /** Requests that reached the app (method url) */
  seen: string[];
  /** Stops listening and cuts every connection, like a crashed app. */
  kill(): Promise<void>;
}

export async function startUpstream(t: TestContext, name: string, mode: UpstreamMode = 'ok'): Promise<Upstream> {
  const up: Upstream = { name, addr: '', server: null as unknown as http.Server, mode, delayMs: 0, seen: [], kill: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      up.seen.push(`${req.method} ${req.url}`);
      if (up.mode === 'destroy-after-read') {
        req.socket.destroy();
        return;
      }
      const body = JSON.stringify({ servedBy: name, method: req.method, url: req.url, body: Buffer.concat(chunks).toString('utf8'), headers: req.headers });
      const answer = () => {
        res.writeHead(req.method === 'POST' ? 201 : 200, {
          'content-type': 'application/json',
          'x-served-by': name,
          'content-length': Buffer.byteLength(body),
        });
        res.end(body);
      };
      if (up.delayMs > 0) setTimeout(answer, up.delayMs);
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.server = server;
  up.addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  up.kill = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) {
        resolve();
        return;
      }
      server.close(() => resolve());
      server.closeAllConnections();
    });
  t.after(() => up.kill());
  return up;
}

/** A port nothing listens on (connections to it are refused). */
export async function closedPort(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `127.0.0.1:${port}`;
}

export async function startDirector(t: TestContext, config: UnderstudyConfig, controllerUrl?: string | string[]): Promise<Director> {
  const d = new Director({ config, controllerUrl, logger: silentLogger, stopGraceMs: 200 });
  await d.start();
  t.after(() => d.stop());
  return d;
}

/** A fake controller that records the signals it receives. */
export async function startFakeController(t: TestContext): Promise<{ url: string; signals: unknown[] }> {
  const signals: unknown[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/signals') signals.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, signals };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: unknown;
  servedBy: string | undefined;
}

/** An HTTP client with its own connection pool, closed after the test. */
export function client(t: TestContext): (url: string, opts?: { method?: string; body?: unknown; headers?: Record<string, string> }) => Promise<Reply> {
  const agent = new Agent({ connections: 64 });
  t.after(() => agent.destroy());
  return async (url, opts = {}) => {
    const res = await request(url, {
      method: (opts.method ?? 'GET') as 'GET',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      headers: { ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers },
      dispatcher: agent,
    });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    const sb = res.headers['x-served-by'];
    return { status: res.statusCode, headers: res.headers, json, servedBy: typeof sb === 'string' ? sb : undefined };
  };
}

export async function putRoute(http: ReturnType<typeof client>, d: Director, route: RouteTable): Promise<Reply> {
  return http(`${d.adminUrl}/v1/routes/${route.site}`, { method: 'PUT', body: route });
}

/** Polls `cond` every 5 ms until true; fails after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function siteStats(d: Director, site = 'shop') {
  const s = d.stats().find((x) => x.site === site);
  if (!s) throw new Error(`no stats for ${site}`);
  return s;
}
