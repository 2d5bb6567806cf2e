import { request } from 'undici';
import { clusterDispatcher } from './cluster-dispatcher.ts';
import { UnderstudyError, errorFromReply } from './errors.ts';

export interface JsonCallOptions {
  method?: string;
  body?: unknown;
  /** A binary body (application/octet-stream) instead of a JSON one. */
  raw?: Uint8Array;
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/**
 * Calls another Understudy part. A reply `{ error: { code, message } }` is thrown
 * as UnderstudyError with that code (a code the registry does not know: US_INTERNAL,
 * naming it); a refused or timed-out connection as
 * US_UNREACHABLE / US_TIMEOUT naming the address.
 */
export async function callJson<T = unknown>(url: string, opts: JsonCallOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  let res;
  try {
    res = await request(url, {
      method: (opts.method ?? (opts.body === undefined && opts.raw === undefined ? 'GET' : 'POST')) as 'GET',
      body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
      headers: {
        ...(opts.raw !== undefined ? { 'content-type': 'application/octet-stream' } : opts.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...opts.headers,
      },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
      dispatcher: clusterDispatcher(),
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.name === 'TimeoutError' || err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT' || err.name === 'AbortError') {
      throw new UnderstudyError('US_TIMEOUT', `${url} did not answer within ${timeoutMs} ms`);
    }
    throw new UnderstudyError('US_UNREACHABLE', `cannot reach ${url}: ${err.code ?? err.message}`);
  }
  const text = await res.body.text();
  let data: unknown = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (res.statusCode >= 400) {
    const errObj = (data as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
    throw errorFromReply(errObj, `${url} answered ${res.statusCode}`);
  }
  return data as T;
}
