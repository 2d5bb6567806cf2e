import { Agent, request } from 'undici';
import { loadSignal, type LoadSignal } from './load-signal.ts';

export interface ProbeResult {
  ok: boolean;
  at: number;
  latencyMs: number;
  /** Why it failed: `refused`, `timeout`, `status 500`, `bad body` … */
  error?: string;
  /** HTTP status, when an answer came. */
  status?: number;
  /**
   * Who answered: the body's `servedBy`, else the `X-Served-By` header, when given.
   * HttpProbe does not judge it; a detector compares it with the expected address.
   */
  servedBy?: string;
  /**
   * The app said it sheds load (429, or 503 with Retry-After; load-signal.ts): then
   * `ok` is true — a sign of load is never a failed probe — and the watchers that
   * care (the load watch) read this.
   */
  load?: LoadSignal;
}

/**
 * One HTTP health probe of a site's app: 200 and a JSON body with `ok: true`
 * within the timeout. Probes use their own connection pool so that a hung
 * app cannot starve the controller's other calls.
 */
export class HttpProbe {
  private readonly dispatcher: Agent;

  constructor(private readonly url: string, private readonly timeoutMs: number) {
    this.dispatcher = new Agent({ connect: { timeout: timeoutMs }, keepAliveTimeout: 4000, connections: 2 });
  }

  async run(): Promise<ProbeResult> {
    const start = Date.now();
    try {
      const res = await request(this.url, {
        dispatcher: this.dispatcher,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await res.body.text();
      const latencyMs = Date.now() - start;
      const status = res.statusCode;
      const header = res.headers['x-served-by'];
      let servedBy = typeof header === 'string' ? header : undefined;
      const load = loadSignal(status, res.headers['retry-after']);
      if (load) return { ok: true, at: start, latencyMs, status, servedBy, load };
      if (status !== 200) return { ok: false, at: start, latencyMs, error: `status ${status}`, status, servedBy };
      try {
        const body = JSON.parse(text) as { ok?: unknown; servedBy?: unknown };
        if (typeof body.servedBy === 'string') servedBy = body.servedBy;
        if (body.ok !== true) return { ok: false, at: start, latencyMs, error: 'body without ok: true', status, servedBy };
      } catch {
        return { ok: false, at: start, latencyMs, error: 'body is not JSON', status, servedBy };
      }
      return { ok: true, at: start, latencyMs, status, servedBy };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // A DOMException (AbortSignal.timeout's TimeoutError) has a numeric legacy
      // `code` (23): its `name` is what says what happened.
      const code = typeof err.code === 'string' ? err.code : err.name;
      const error = code === 'ECONNREFUSED' ? 'refused'
        : code === 'TimeoutError' || code === 'AbortError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' ? 'timeout'
          : String(code);
      return { ok: false, at: start, latencyMs: Date.now() - start, error };
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.destroy().catch(() => undefined);
  }
}
