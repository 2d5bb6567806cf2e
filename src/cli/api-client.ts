import fs from 'node:fs';
import http from 'node:http';
import { DEFAULT_CONTROLLER_LISTEN, parseEndpoint } from '../config/endpoint.ts';
import { endpointUrl, type Endpoint } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { baseDirFor, resolveConfigPath } from './config-path.ts';

/**
 * The CLI's calls to the controller API (status, events, failover, …). A command
 * is one short process, so this file loads as little as it can: node:http rather
 * than undici, and of the config only `controller.listen` (see controllerListen).
 */

export interface ApiOptions { api?: string; config?: string }

export interface ApiCallOptions {
  body?: unknown;
  /** @default 5000 */
  timeoutMs?: number;
}

/** The controller's API address: --api, else UNDERSTUDY_API, else the config's controller.listen. */
export async function apiBase(opts: ApiOptions): Promise<string> {
  if (opts.api) return opts.api.replace(/\/$/, '');
  if (process.env.UNDERSTUDY_API) return process.env.UNDERSTUDY_API.replace(/\/$/, '');
  return endpointUrl(await controllerListen(resolveConfigPath(opts.config)));
}

/**
 * `controller.listen` of a config file. The API commands need nothing else, so the
 * file is only parsed as YAML, not validated whole: a problem elsewhere in it (an
 * operator editing it while Understudy runs) does not stop `status`. When the
 * address itself is missing its default applies; when it is anything else than a
 * valid address (or the file cannot be read or parsed) the full config pipeline
 * runs and names the problem as `file:line:col: path: message`.
 */
export async function controllerListen(file: string): Promise<Endpoint> {
  let doc: unknown;
  try {
    const { parse } = await import('yaml');
    doc = parse(fs.readFileSync(file, 'utf8'));
  } catch {
    doc = undefined;
  }
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc)) {
    const controller = (doc as Record<string, unknown>).controller;
    if (controller === undefined || controller === null) return DEFAULT_CONTROLLER_LISTEN;
    if (typeof controller === 'object' && !Array.isArray(controller)) {
      const listen = (controller as Record<string, unknown>).listen;
      if (listen === undefined || listen === null) return DEFAULT_CONTROLLER_LISTEN;
      const e = parseEndpoint(listen);
      if (e !== undefined) return e;
    }
  }
  const { loadConfig } = await import('../config/load-config.ts');
  return loadConfig(file, { baseDir: baseDirFor(file) }).controller.listen;
}

/**
 * Calls the controller API, with `UNDERSTUDY_TOKEN` as the bearer token if set.
 * A reply `{ error: { code, message } }` is thrown as UnderstudyError with that
 * code; a refused or timed-out connection as US_UNREACHABLE / US_TIMEOUT naming
 * the address (the same mapping as the parts' own client, shared/http-client.ts).
 */
export async function callApi<T>(opts: ApiOptions, pathAndQuery: string, call: ApiCallOptions = {}): Promise<T> {
  const url = `${await apiBase(opts)}${pathAndQuery}`;
  const timeoutMs = call.timeoutMs ?? 5000;
  const token = process.env.UNDERSTUDY_TOKEN;
  const body = call.body === undefined ? undefined : JSON.stringify(call.body);
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    let req: http.ClientRequest;
    try {
      req = http.request(url, { method: body === undefined ? 'GET' : 'POST', headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => reject(unreachable(url, e)));
      });
    } catch (e) {
      reject(new UnderstudyError('US_BAD_REQUEST', `--api / UNDERSTUDY_API: ${url} is not an http:// URL (${(e as Error).message})`));
      return;
    }
    req.setTimeout(timeoutMs, () => req.destroy(new UnderstudyError('US_TIMEOUT', `${url} did not answer within ${timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof UnderstudyError ? e : unreachable(url, e)));
    req.end(body);
  });
  let data: unknown = undefined;
  if (text.length > 0) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (status >= 400) {
    const errObj = (data as { error?: { code?: string; message?: string; details?: unknown } } | undefined)?.error;
    throw new UnderstudyError((errObj?.code as never) ?? 'US_INTERNAL', errObj?.message ?? `${url} answered ${status}`, errObj?.details);
  }
  return data as T;
}

function unreachable(url: string, e: Error): UnderstudyError {
  return new UnderstudyError('US_UNREACHABLE', `cannot reach ${url}: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
}
