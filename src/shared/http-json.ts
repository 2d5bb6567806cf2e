import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { UnderstudyError, isUnderstudyError, statusOf } from './errors.ts';
import { createPartServer, requireClusterSecret, type PartSecurity } from './cluster-transport.ts';
import type { FencingGate } from './fencing.ts';

/**
 * A minimal JSON HTTP server shared by the controller API, the storage processor,
 * the director's admin API and the host agent. Routes are `METHOD /path/:param`.
 * Errors thrown as UnderstudyError become `{ error: { code, message } }` with the
 * status the registry (errors.ts) gives the code; bodies are validated with zod where
 * a schema is given.
 */
export interface JsonRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  headers: http.IncomingHttpHeaders;
  raw: http.IncomingMessage;
}

export type JsonHandler = (req: JsonRequest, res: http.ServerResponse) => unknown | Promise<unknown>;

interface Route {
  method: string;
  parts: string[];
  handler: JsonHandler;
}

export class JsonRouter {
  /** Routes by method and number of path parts, in the order they were added. */
  private readonly routes = new Map<string, Route[]>();

  on(method: string, path: string, handler: JsonHandler): this {
    const parts = path.split('/').filter(Boolean);
    const key = `${method} ${parts.length}`;
    let list = this.routes.get(key);
    if (list === undefined) this.routes.set(key, (list = []));
    list.push({ method, parts, handler });
    return this;
  }

  /** Returns true when a route handled the request. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
    // Split by hand, not with `new URL`: this runs for every call between parts, the
    // sync barrier and replication's frames among them.
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const pathname = q < 0 ? target : target.slice(0, q);
    const parts = pathname.split('/').filter(Boolean);
    for (const r of this.routes.get(`${req.method} ${parts.length}`) ?? []) {
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const p = r.parts[i]!;
        if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(parts[i]!);
        else if (p !== parts[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      try {
        const body = await readJsonBody(req);
        const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
        const out = await r.handler({ params, query, body, headers: req.headers, raw: req }, res);
        if (!res.headersSent && !res.writableEnded) sendJson(res, 200, out ?? { ok: true });
      } catch (e) {
        sendError(res, e);
      }
      return true;
    }
    return false;
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: http.ServerResponse, e: unknown): void {
  if (isUnderstudyError(e)) {
    sendJson(res, statusOf(e.code), { error: { code: e.code, message: e.message, details: e.details } });
  } else {
    sendJson(res, 500, { error: { code: 'US_INTERNAL', message: e instanceof Error ? e.message : String(e) } });
  }
}

async function readJsonBody(req: http.IncomingMessage): Promise<unknown> {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  const buf = await readBody(req);
  if (buf.length === 0) return undefined;
  const type = req.headers['content-type'] ?? '';
  if (!type.includes('json')) return buf;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new UnderstudyError('US_BAD_REQUEST', 'request body is not valid JSON');
  }
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;

/**
 * The request's whole body. Through the stream's events rather than `for await`: an
 * async iterator per request cost the small calls between parts more than the rest
 * of reading them.
 */
function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        cleanup();
        req.resume(); // the rest is read and dropped; the answer is the refusal
        reject(new UnderstudyError('US_BAD_REQUEST', 'request body larger than 64 MiB'));
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onClose = (): void => {
      // Closed before the end: the client went away mid-body.
      cleanup();
      reject(new UnderstudyError('US_BAD_REQUEST', 'the connection closed before the request body ended'));
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** Validates a body against a schema; the error names the field, e.g. `epoch: expected number`. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const msg = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
  throw new UnderstudyError('US_BAD_REQUEST', msg);
}

/** A part's server; `settled()` resolves once the route handlers still running have ended (at most `timeoutMs`, default 5 s). */
export type JsonServer = http.Server & { settled(timeoutMs?: number): Promise<void> };

/**
 * `security`: what the part requires of its callers (cluster-transport.ts): every request
 * must carry the cluster secret, checked before any route runs, and the server speaks TLS
 * when the cluster does. `part` names the part in a refusal.
 */
export function createJsonServer(
  router: JsonRouter,
  fallback?: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | null,
  guard?: { security: PartSecurity | null; part: string; fencing?: FencingGate },
): JsonServer {
  const fencing = guard?.fencing;
  /** The route handlers still running (a closed server's handlers finish after close()). */
  const inflight = new Set<Promise<unknown>>();
  const server = createPartServer(guard?.security ?? null, (req, res) => {
    try {
      requireClusterSecret(guard?.security ?? null, req.headers, guard?.part ?? 'this part');
    } catch (e) {
      req.resume();
      sendError(res, e);
      return;
    }
    // A command from a controller that no longer leads runs no route (fencing.ts).
    const admitted = fencing ? fencing.admit(req) : null;
    const work = admitted ? admitted.then(() => router.handle(req, res)) : router.handle(req, res);
    inflight.add(work);
    const settled = (): void => {
      inflight.delete(work);
    };
    work.then(settled, settled);
    work.then(
      (handled) => {
        if (handled) return;
        if (fallback) fallback(req, res);
        else sendJson(res, 404, { error: { code: 'US_NOT_FOUND', message: `no route ${req.method} ${req.url}` } });
      },
      (e) => {
        req.resume();
        sendError(res, e);
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  return Object.assign(server, {
    settled: async (timeoutMs = 5000): Promise<void> => {
      if (inflight.size === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...inflight]), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    },
  });
}

export function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (e.code === 'EADDRINUSE')
        reject(new UnderstudyError('US_PORT_IN_USE', `${host}:${port} is already in use: stop what listens there or choose another port in the config`));
      else reject(e);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
