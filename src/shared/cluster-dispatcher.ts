import { Agent, setGlobalDispatcher, type Dispatcher } from 'undici';
import { endpointToString, type UnderstudyConfig } from '../config/types.ts';
import { readPem, readSecretRef } from './cluster-transport.ts';

/*
 * The client side of the cluster's transport (the server side, which a part that
 * only answers needs, is cluster-transport.ts and does not load undici): calls to
 * the config's internal endpoints carry the cluster secret and go over TLS.
 */

interface Installed {
  /** host:port of every internal endpoint. */
  internal: Set<string>;
  secret: string | null;
  tls: boolean;
  ca: Buffer | null;
  dispatcher: Dispatcher;
}

let installed: Installed | null = null;
let plain: Dispatcher | null = null;

/** host:port of every part's endpoint in the config: the origins that get the secret. */
export function internalEndpoints(config: UnderstudyConfig): Set<string> {
  const out = new Set<string>([endpointToString(config.controller.listen), endpointToString(config.director.listen)]);
  for (const m of Object.values(config.controller.members)) out.add(endpointToString(m));
  for (const m of Object.values(config.director.members)) out.add(endpointToString(m));
  for (const s of Object.values(config.storage)) out.add(endpointToString(s.listen));
  for (const h of Object.values(config.hosts)) out.add(endpointToString({ host: h.address, port: h.agentPort }));
  return out;
}

function originKey(origin: string | URL | undefined): { key: string; url: URL } | null {
  if (origin === undefined) return null;
  try {
    const url = typeof origin === 'string' ? new URL(origin) : origin;
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    return { key: endpointToString({ host, port: Number(port) }), url };
  } catch {
    return null;
  }
}

function withAuthorization(headers: Dispatcher.DispatchOptions['headers'], value: string): Dispatcher.DispatchOptions['headers'] {
  if (headers === null || headers === undefined) return { authorization: value };
  if (Array.isArray(headers)) {
    const out: string[] = [];
    for (let i = 0; i + 1 < headers.length; i += 2)
      if (String(headers[i]).toLowerCase() !== 'authorization') out.push(headers[i] as string, headers[i + 1] as string);
    return [...out, 'authorization', value];
  }
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(headers as Record<string, string | string[] | undefined>)) if (k.toLowerCase() !== 'authorization') out[k] = v;
  out.authorization = value;
  return out as Dispatcher.DispatchOptions['headers'];
}

/**
 * Sets this process's calls up for the cluster: calls to the config's internal endpoints
 * carry the secret and go over TLS (verified against the cluster CA) when configured.
 * Idempotent; without `cluster:` in the config it changes nothing.
 */
export function installClusterTransport(config: UnderstudyConfig): void {
  const c = config.cluster;
  if (!c?.secret) return;
  const secret = readSecretRef(c.secret, 'cluster.secret');
  const ca = c.tls ? readPem(c.tls.ca, 'ca') : null;
  const internal = internalEndpoints(config);
  const base = new Agent({ keepAliveTimeout: 10_000, connections: 16, ...(ca ? { connect: { ca } } : {}) });
  const auth = `Bearer ${secret}`;
  const dispatcher = base.compose((dispatch) => (opts, handler) => {
    const o = originKey(opts.origin as string | URL | undefined);
    if (!o || !internal.has(o.key)) return dispatch(opts, handler);
    const origin = ca && o.url.protocol === 'http:' ? `https://${o.url.host}` : opts.origin;
    return dispatch({ ...opts, origin, headers: withAuthorization(opts.headers, auth) }, handler);
  });
  installed = { internal, secret, tls: ca !== null, ca, dispatcher };
  setGlobalDispatcher(dispatcher);
}

/** The dispatcher for calls between parts: the cluster's when installed, else a plain keep-alive agent. */
export function clusterDispatcher(): Dispatcher {
  if (installed) return installed.dispatcher;
  plain ??= new Agent({ keepAliveTimeout: 10_000, connections: 16 });
  return plain;
}

/** A part's base URL as its callers must use it: https:// when the cluster speaks TLS. */
export function internalUrl(url: string): string {
  if (!installed?.tls) return url;
  const o = originKey(url);
  return o && installed.internal.has(o.key) && o.url.protocol === 'http:' ? `https://${url.slice('http://'.length)}` : url;
}

/** Connect options (the CA) for a dispatcher of its own that calls a part (a pool kept per storage system). */
export function internalConnectOptions(): { ca?: Buffer } {
  return installed?.ca ? { ca: installed.ca } : {};
}

/** The header a call to a part carries, for callers that build their own requests. */
export function internalHeaders(): Record<string, string> {
  return installed?.secret ? { authorization: `Bearer ${installed.secret}` } : {};
}
