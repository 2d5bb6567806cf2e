import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type tls from 'node:tls';
import type { SecretRef, UnderstudyConfig } from '../config/types.ts';
import { UnderstudyError } from './errors.ts';

/**
 * How Understudy's parts authenticate each other (`cluster:` in the config).
 *
 * - The cluster secret: every internal call carries it as `Authorization: Bearer …`;
 *   every part compares it in constant time and refuses a call without it (401,
 *   US_UNAUTHORIZED). It is read from a file or the environment and never logged.
 * - TLS: every internal endpoint is served over HTTPS with the part's own certificate;
 *   callers verify it against the cluster's CA. A plain-HTTP call to such an endpoint
 *   gets a clear 400 (US_TLS_REQUIRED) instead of a broken handshake.
 *
 * One process installs the client side once (`installClusterTransport`): undici's global
 * dispatcher, and the one the part's own calls use, add the secret and switch to HTTPS
 * for the internal endpoints the config names (exactly those host:port pairs: a shop's
 * app, its front and a webhook never get the secret). Without `cluster:` nothing
 * changes, which the config allows only while every part listens on loopback.
 */

/** What a part's server requires of its callers. */
export interface PartSecurity {
  /** The secret's SHA-256 (compared in constant time); null: no secret configured. */
  secretDigest: Buffer | null;
  /** Server certificate of this part, or null (plain HTTP). */
  tls: { ca: Buffer; cert: Buffer; key: Buffer } | null;
}

/** Environment variables a secret was read from in this process: never passed on to an app. */
const secretEnv = new Set<string>();

export function secretEnvNames(): readonly string[] {
  return [...secretEnv];
}

/** Reads a secret where the config says it is. A missing one stops the part, naming where it looked. */
export function readSecretRef(ref: SecretRef, what: string): string {
  let value: string | undefined;
  if ('env' in ref) {
    secretEnv.add(ref.env);
    value = process.env[ref.env];
    if (value === undefined) throw new UnderstudyError('US_CREDENTIALS_UNREADABLE', `${what}: the environment variable ${ref.env} is not set`);
  } else {
    try {
      value = fs.readFileSync(ref.file, 'utf8');
    } catch (e) {
      throw new UnderstudyError(
        'US_CREDENTIALS_UNREADABLE',
        `${what}: cannot read ${ref.file} (${(e as NodeJS.ErrnoException).code ?? 'error'}); create it, e.g. \`openssl rand -hex 32 > ${ref.file} && chmod 600 ${ref.file}\``,
      );
    }
  }
  value = value.trim();
  if (value.length < 16)
    throw new UnderstudyError(
      'US_CREDENTIALS_UNREADABLE',
      `${what}: ${'env' in ref ? ref.env : ref.file} holds ${value.length} characters; a secret needs at least 16 (\`openssl rand -hex 32\`)`,
    );
  return value;
}

export function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UnderstudyError(
      'US_CREDENTIALS_UNREADABLE',
      `cluster.tls.${what}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}); docs/operations.md ("Certificates") shows how to make them`,
    );
  }
}

/** `{{part}}` in a certificate path is the part's name. */
export function partPath(template: string, part: string): string {
  return template.replaceAll('{{part}}', part);
}

const digest = (s: string): Buffer => crypto.createHash('sha256').update(s).digest();

/** What the part named `part` requires of its callers (`controller`, `director`, a storage system's or a host's name). */
export function partSecurity(config: UnderstudyConfig, part: string): PartSecurity {
  const c = config.cluster;
  if (!c?.secret) return { secretDigest: null, tls: null };
  const secretDigest = digest(readSecretRef(c.secret, 'cluster.secret'));
  const tls = c.tls ? { ca: readPem(c.tls.ca, 'ca'), cert: readPem(partPath(c.tls.cert, part), 'cert'), key: readPem(partPath(c.tls.key, part), 'key') } : null;
  return { secretDigest, tls };
}

/** The bearer credential of a request, or null. */
export function bearerOf(headers: http.IncomingHttpHeaders): string | null {
  const h = headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

/** Whether `presented` is the secret whose digest is `expected`, in constant time. */
export function secretMatches(presented: string | null, expected: Buffer): boolean {
  if (presented === null) return false;
  return crypto.timingSafeEqual(digest(presented), expected);
}

/** Throws US_UNAUTHORIZED unless the request carries the cluster secret (no-op without one). */
export function requireClusterSecret(security: PartSecurity | null, headers: http.IncomingHttpHeaders, part: string): void {
  if (!security?.secretDigest) return;
  const presented = bearerOf(headers);
  if (presented === null)
    throw new UnderstudyError('US_UNAUTHORIZED', `${part} refuses a call without credentials: internal calls carry the cluster secret (cluster.secret)`);
  if (!secretMatches(presented, security.secretDigest))
    throw new UnderstudyError('US_UNAUTHORIZED', `${part} refuses the call: wrong cluster secret (every part must read the same cluster.secret)`);
}

/**
 * An HTTP server, or an HTTPS one with the part's certificate. On TLS, a plain-HTTP call
 * (OpenSSL recognises an HTTP request where a handshake should be) is answered 400
 * US_TLS_REQUIRED in plain HTTP on the raw connection, and closed, instead of a reset.
 */
export function createPartServer(security: PartSecurity | null, handler: http.RequestListener): http.Server {
  if (!security?.tls) return http.createServer(handler);
  const server = https.createServer({ ca: security.tls.ca, cert: security.tls.cert, key: security.tls.key, minVersion: 'TLSv1.2' }, handler);
  server.on('tlsClientError', (err: NodeJS.ErrnoException, tlsSocket: tls.TLSSocket) => {
    // The TLS socket's underlying TCP connection (Node keeps it as `_parent`).
    const raw = (tlsSocket as unknown as { _parent?: net.Socket })._parent;
    if (err.code !== 'ERR_SSL_HTTP_REQUEST' || !raw?.writable) return;
    const body = JSON.stringify({
      error: { code: 'US_TLS_REQUIRED', message: 'this endpoint speaks TLS only (cluster.tls): call it with https:// and the cluster CA' },
    });
    raw.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  return server as unknown as http.Server;
}
