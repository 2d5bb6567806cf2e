import { Agent, type Dispatcher } from 'undici';
import { loadSignal, type LoadSignal } from './load-signal.ts';

export interface ProbeResult {
  ok: boolean;
  at: number;
  latencyMs: number;
  /** Why it failed: `refused`, `timeout`, `status 500`, `body does not match /…/` … */
  error?: string;
  /** HTTP status, when an answer came. */
  status?: number;
  /** The start of a wrong answer's body (one line, at most 200 characters), for the operator. */
  answer?: string;
  /**
   * The app said it sheds load (429, or 503 with Retry-After; load-signal.ts): then
   * `ok` is true — a sign of load is never a failed probe — and the watchers that
   * care (the load watch) read this.
   */
  load?: LoadSignal;
}

/**
 * What a probe's answer must be to count as healthy (`health.probe.expect`).
 * `status`: codes ("200") and classes ("2xx"), one of which must match; absent:
 * any 2xx or 3xx, as Kubernetes' httpGet and HAProxy's httpchk count it. `body`: a
 * regular expression the first 64 KiB of the body must match; absent: not read for meaning.
 */
export interface ProbeExpect {
  status?: readonly string[];
  body?: string;
}

/** At most this much of a body is read: a probe never downloads a page. */
const BODY_CAP = 64 * 1024;

/** Whether `status` is one the probe accepts. */
export function statusAccepted(status: number, expect: ProbeExpect | undefined): boolean {
  if (!expect?.status) return status >= 200 && status < 400;
  return expect.status.some((m) => (m.endsWith('xx') ? Math.floor(status / 100) === Number(m[0]) : Number(m) === status));
}

/**
 * One HTTP health probe of a site's app: GET the URL (redirects are not followed),
 * within the timeout, and judge the status (and the body, if `expect.body` is set).
 * Who answered is the address that was called: nothing in the answer is trusted to
 * say it. Probes use their own connection pool so that a hung app cannot starve the
 * controller's other calls.
 */
export class HttpProbe {
  private readonly dispatcher: Agent;
  private readonly bodyPattern: RegExp | undefined;
  private readonly origin: string;
  private readonly path: string;

  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
    private readonly expect?: ProbeExpect,
  ) {
    this.dispatcher = new Agent({ connect: { timeout: timeoutMs }, keepAliveTimeout: 4000, connections: 2 });
    this.bodyPattern = expect?.body !== undefined ? new RegExp(expect.body) : undefined;
    const u = new URL(url);
    this.origin = u.origin;
    this.path = `${u.pathname}${u.search}`;
  }

  /** What is probed, for messages. */
  get target(): string {
    return this.url;
  }

  /**
   * One probe, dispatched straight to the connection pool: no response stream, no
   * abort signal per probe (a controller sends a thousand a second). One timer bounds
   * the whole probe (connect, answer and body); at most BODY_CAP of the body is read.
   */
  run(): Promise<ProbeResult> {
    const start = Date.now();
    return new Promise<ProbeResult>((resolve) => {
      let done = false;
      let ctl: Dispatcher.DispatchController | null = null;
      let status = 0;
      let retryAfter: string | string[] | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (r: ProbeResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(r);
      };
      const fail = (code: string): void => finish({ ok: false, at: start, latencyMs: Date.now() - start, error: errorOf(code) });
      const answered = (): void => finish(this.judge(start, status, retryAfter, Buffer.concat(chunks, size).subarray(0, BODY_CAP).toString('utf8')));
      const timer = setTimeout(() => {
        fail('TimeoutError');
        ctl?.abort(new Error(`probe timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.dispatcher.dispatch(
        { origin: this.origin, path: this.path, method: 'GET', headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs },
        {
          onRequestStart(controller) {
            ctl = controller;
            if (done) controller.abort(new Error('probe timed out'));
          },
          onResponseStart(_controller, statusCode, headers) {
            status = statusCode;
            retryAfter = headers['retry-after'];
          },
          onResponseData(controller, chunk) {
            chunks.push(chunk);
            size += chunk.length;
            if (size >= BODY_CAP) {
              answered();
              controller.abort(new Error('probe read enough of the body'));
            }
          },
          onResponseEnd() {
            answered();
          },
          onResponseError(_controller, err) {
            const e = err as NodeJS.ErrnoException;
            // A DOMException has a numeric legacy `code`: its `name` says what happened.
            fail(typeof e.code === 'string' ? e.code : e.name);
          },
        },
      );
    });
  }

  private judge(start: number, status: number, retryAfter: string | string[] | undefined, text: string): ProbeResult {
    const latencyMs = Date.now() - start;
    const load = loadSignal(status, retryAfter);
    if (load) return { ok: true, at: start, latencyMs, status, load };
    if (!statusAccepted(status, this.expect)) return { ok: false, at: start, latencyMs, error: `status ${status}`, status, answer: excerpt(text) };
    if (this.bodyPattern && !this.bodyPattern.test(text)) {
      return { ok: false, at: start, latencyMs, error: `body does not match /${this.bodyPattern.source}/`, status, answer: excerpt(text) };
    }
    return { ok: true, at: start, latencyMs, status };
  }

  async close(): Promise<void> {
    await this.dispatcher.destroy().catch(() => undefined);
  }
}

/** A failed probe's `error`, from the error's code (or name). */
function errorOf(code: string): string {
  if (code === 'ECONNREFUSED') return 'refused';
  if (
    code === 'TimeoutError' ||
    code === 'AbortError' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT'
  )
    return 'timeout';
  return code;
}

function excerpt(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
