import { Agent, request } from 'undici';
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

  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
    private readonly expect?: ProbeExpect,
  ) {
    this.dispatcher = new Agent({ connect: { timeout: timeoutMs }, keepAliveTimeout: 4000, connections: 2 });
    this.bodyPattern = expect?.body !== undefined ? new RegExp(expect.body) : undefined;
  }

  /** What is probed, for messages. */
  get target(): string {
    return this.url;
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
      const text = await readCapped(res.body);
      const latencyMs = Date.now() - start;
      const status = res.statusCode;
      const load = loadSignal(status, res.headers['retry-after']);
      if (load) return { ok: true, at: start, latencyMs, status, load };
      if (!statusAccepted(status, this.expect)) return { ok: false, at: start, latencyMs, error: `status ${status}`, status, answer: excerpt(text) };
      if (this.bodyPattern && !this.bodyPattern.test(text)) {
        return { ok: false, at: start, latencyMs, error: `body does not match /${this.bodyPattern.source}/`, status, answer: excerpt(text) };
      }
      return { ok: true, at: start, latencyMs, status };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // A DOMException (AbortSignal.timeout's TimeoutError) has a numeric legacy
      // `code` (23): its `name` is what says what happened.
      const code = typeof err.code === 'string' ? err.code : err.name;
      const error =
        code === 'ECONNREFUSED'
          ? 'refused'
          : code === 'TimeoutError' ||
              code === 'AbortError' ||
              code === 'UND_ERR_HEADERS_TIMEOUT' ||
              code === 'UND_ERR_CONNECT_TIMEOUT' ||
              code === 'UND_ERR_BODY_TIMEOUT'
            ? 'timeout'
            : String(code);
      return { ok: false, at: start, latencyMs: Date.now() - start, error };
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.destroy().catch(() => undefined);
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= BODY_CAP) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, BODY_CAP).toString('utf8');
}

function excerpt(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
