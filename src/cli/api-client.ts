import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { DEFAULT_CONTROLLER_LISTEN, parseEndpoint } from '../config/endpoint.ts';
import { endpointToString, type Endpoint } from '../config/types.ts';
import { UnderstudyError, errorFromReply } from '../shared/errors.ts';
import { baseDirFor, resolveConfigPath } from './config-path.ts';

/**
 * The CLI's calls to the controller API (status, events, failover, …). A command
 * is one short process, so this file loads as little as it can: node:http rather
 * than undici, and of the config only what the API calls need, read with js-yaml (see apiSettings).
 */

export interface ApiOptions {
  api?: string;
  config?: string;
}

export interface ApiCallOptions {
  body?: unknown;
  /** @default 5000 */
  timeoutMs?: number;
}

/** How the CLI reaches the controller: its base URL, the token it sends, the CA it trusts (cluster.tls). */
export interface ApiAccess {
  base: string;
  /** Where several controllers elect a leader (`controller.members`): the others' API bases, tried in turn when `base` cannot be reached. */
  others: string[];
  token: string | null;
  ca: Buffer | null;
}

/**
 * The controller's API address: --api, else UNDERSTUDY_API, else the config's
 * controller.listen (https:// when the config has cluster.tls). The token:
 * UNDERSTUDY_TOKEN, else the config's controller.token. The CA: UNDERSTUDY_CA (a PEM
 * file), else the config's cluster.tls.ca.
 */
export async function apiAccess(opts: ApiOptions): Promise<ApiAccess> {
  const explicit = opts.api ?? process.env.UNDERSTUDY_API;
  let settings: ApiSettings | null = null;
  try {
    settings = await apiSettings(resolveConfigPath(opts.config));
  } catch (e) {
    if (!explicit) throw e;
  }
  const ca = process.env.UNDERSTUDY_CA
    ? readFile(process.env.UNDERSTUDY_CA, 'UNDERSTUDY_CA')
    : settings?.caFile
      ? readFile(settings.caFile, 'cluster.tls.ca')
      : null;
  const scheme = ca ? 'https' : 'http';
  const base = explicit ? explicit.replace(/\/$/, '') : `${scheme}://${endpointToString(settings!.listen)}`;
  const others = explicit ? [] : [...new Set((settings?.members ?? []).map((m) => `${scheme}://${endpointToString(m)}`))].filter((b) => b !== base);
  const token =
    process.env.UNDERSTUDY_TOKEN ||
    (settings?.tokenFile
      ? readFile(settings.tokenFile, 'controller.token').toString('utf8').trim()
      : settings?.tokenEnv
        ? (process.env[settings.tokenEnv] ?? null)
        : null);
  return { base, others, token: token || null, ca };
}

/** The controller's API base URL (see apiAccess). */
export async function apiBase(opts: ApiOptions): Promise<string> {
  return (await apiAccess(opts)).base;
}

function readFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UnderstudyError('US_CREDENTIALS_UNREADABLE', `${what}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

interface ApiSettings {
  listen: Endpoint;
  members?: Endpoint[];
  tokenFile?: string;
  tokenEnv?: string;
  caFile?: string;
}

/**
 * `controller.listen`, `controller.token` and `cluster.tls.ca` of a config file. The API
 * commands need nothing else, so the file is only parsed as YAML, not validated whole: a
 * problem elsewhere in it (an operator editing it while Understudy runs) does not stop
 * `status`. When the address itself is missing its default applies; when it is anything
 * else than a valid address (or the file cannot be read or parsed) the full config
 * pipeline runs and names the problem as `file:line:col: path: message`.
 */
async function apiSettings(file: string): Promise<ApiSettings> {
  let doc: unknown;
  try {
    // js-yaml, not the yaml package of the config pipeline: it loads several times faster, and a CLI call pays for every import.
    const { load } = await import('js-yaml');
    doc = load(fs.readFileSync(file, 'utf8'));
  } catch {
    doc = undefined;
  }
  const obj = (v: unknown): Record<string, unknown> | null =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  const top = obj(doc);
  if (top) {
    const base = baseDirFor(file);
    const controller = top.controller === undefined || top.controller === null ? {} : obj(top.controller);
    const tls = obj(obj(top.cluster)?.tls);
    const token = obj(controller?.token);
    const members = Object.values(obj(controller?.members) ?? {})
      .map((m) => parseEndpoint(m))
      .filter((m): m is Endpoint => m !== undefined);
    const extra: Omit<ApiSettings, 'listen'> = {
      ...(members.length > 0 ? { members } : {}),
      ...(typeof tls?.ca === 'string' ? { caFile: path.resolve(base, tls.ca) } : {}),
      ...(typeof token?.file === 'string' ? { tokenFile: path.resolve(base, token.file) } : {}),
      ...(typeof token?.env === 'string' ? { tokenEnv: token.env } : {}),
    };
    if (controller) {
      const listen = controller.listen;
      if (listen === undefined || listen === null) return { listen: DEFAULT_CONTROLLER_LISTEN, ...extra };
      const e = parseEndpoint(listen);
      if (e !== undefined) return { listen: e, ...extra };
    }
  }
  const { loadConfig } = await import('../config/load-config.ts');
  const c = loadConfig(file, { baseDir: baseDirFor(file) });
  return {
    listen: c.controller.listen,
    members: Object.values(c.controller.members),
    ...(c.cluster?.tls ? { caFile: c.cluster.tls.ca } : {}),
    ...(c.controller.token ? ('file' in c.controller.token ? { tokenFile: c.controller.token.file } : { tokenEnv: c.controller.token.env }) : {}),
  };
}

/**
 * Calls the controller API with the token (apiAccess) as the bearer credential, if there is one.
 * A reply `{ error: { code, message } }` is thrown as UnderstudyError with that
 * code; a refused or timed-out connection as US_UNREACHABLE / US_TIMEOUT naming
 * the address (the same mapping as the parts' own client, shared/http-client.ts).
 */
export async function callApi<T>(opts: ApiOptions, pathAndQuery: string, call: ApiCallOptions = {}): Promise<T> {
  const access = await apiAccess(opts);
  // Several controllers: one that cannot be reached is passed over; a command sent to a follower goes to the leader it names.
  let lastError: unknown = null;
  for (const base of [access.base, ...access.others]) {
    try {
      return await callOnce<T>(access, base, pathAndQuery, call);
    } catch (e) {
      const code = (e as UnderstudyError).code;
      const leaderApi = ((e as UnderstudyError).details as { leaderApi?: unknown } | undefined)?.leaderApi;
      if (code === 'US_NOT_LEADER' && typeof leaderApi === 'string') return callOnce<T>(access, `${base.split('://')[0]}://${leaderApi}`, pathAndQuery, call);
      if (code !== 'US_UNREACHABLE' || access.others.length === 0) throw e;
      lastError = e;
    }
  }
  throw lastError as Error;
}

async function callOnce<T>(access: ApiAccess, base: string, pathAndQuery: string, call: ApiCallOptions): Promise<T> {
  const url = `${base}${pathAndQuery}`;
  const timeoutMs = call.timeoutMs ?? 5000;
  const token = access.token;
  const body = call.body === undefined ? undefined : JSON.stringify(call.body);
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  // node:https (and node:tls under it) only when the API speaks TLS: a CLI call pays for every import.
  const client = url.startsWith('https:') ? (await import('node:https')).default : http;
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    let req: http.ClientRequest;
    try {
      req = client.request(url, { method: body === undefined ? 'GET' : 'POST', headers, agent: false, ...(access.ca ? { ca: access.ca } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => reject(unreachable(url, e)));
      });
    } catch (e) {
      reject(new UnderstudyError('US_BAD_REQUEST', `--api / UNDERSTUDY_API: ${url} is not an http:// or https:// URL (${(e as Error).message})`));
      return;
    }
    req.setTimeout(timeoutMs, () => req.destroy(new UnderstudyError('US_TIMEOUT', `${url} did not answer within ${timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof UnderstudyError ? e : unreachable(url, e)));
    req.end(body);
  });
  let data: unknown = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (status >= 400) {
    const errObj = (data as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
    throw errorFromReply(errObj, `${url} answered ${status}`);
  }
  return data as T;
}

function unreachable(url: string, e: Error): UnderstudyError {
  return new UnderstudyError('US_UNREACHABLE', `cannot reach ${url}: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
}
