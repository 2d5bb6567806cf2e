import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Header rewriting of the reverse proxy. Hop-by-hop headers (RFC 9110 §7.6.1)
 * describe one connection, not the message, so they are never forwarded: the
 * director runs its own keep-alive on each side. Everything else passes through
 * unchanged, both ways (X-Served-By comes from the app). Towards the upstream it
 * adds X-Forwarded-For / -Proto / -Host, so the app still sees its client.
 */

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // Node's server already answered `Expect: 100-continue`; undici refuses to send it.
  'expect',
]);

/** Extra hop-by-hop names a `Connection: close, x-foo` header lists; null when none (the usual case). */
function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined || value.length <= 10) {
    // 'keep-alive' / 'close' (any case), the only values browsers send: nothing extra, no split.
    if (value === undefined) return null;
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return null;
  }
  let out: Set<string> | null = null;
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase();
    if (name === '' || name === 'close' || name === 'keep-alive') continue;
    (out ??= new Set()).add(name);
  }
  return out;
}

/**
 * The request headers for the upstream, as undici's flat `[name, value, …]` list.
 * `rawHeaders` keeps the client's order, case and duplicates.
 */
export function upstreamRequestHeaders(rawHeaders: string[], remoteAddress: string | undefined, connection: string | undefined): string[] {
  const extra = connectionTokens(connection);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let hasProto = false;
  let hasFwdHost = false;
  let host: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (extra !== null && extra.has(lower))) continue;
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      continue;
    }
    if (lower === 'x-forwarded-proto') hasProto = true;
    else if (lower === 'x-forwarded-host') hasFwdHost = true;
    else if (lower === 'host') {
      // undici refuses a duplicated Host; the first one is the one Node's server routed on.
      if (host !== undefined) continue;
      host = value;
    }
    out.push(name, value);
  }
  if (remoteAddress !== undefined) {
    out.push('x-forwarded-for', forwardedFor === undefined ? remoteAddress : `${forwardedFor}, ${remoteAddress}`);
  } else if (forwardedFor !== undefined) {
    out.push('x-forwarded-for', forwardedFor);
  }
  if (!hasProto) out.push('x-forwarded-proto', 'http');
  if (!hasFwdHost && host !== undefined) out.push('x-forwarded-host', host);
  return out;
}

/** The upstream's response headers for the client, without hop-by-hop headers. */
export function clientResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const conn = headers.connection;
  const extra = connectionTokens(Array.isArray(conn) ? conn.join(',') : conn);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (extra !== null && extra.has(name)) || name === '__proto__') continue;
    const v = headers[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** True when the request carries a body (the message framing says so). */
export function hasRequestBody(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const cl = headers['content-length'];
  return cl !== undefined && cl !== '0';
}
