import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import type { Dispatcher, Pool } from 'undici';
import type { RouteTable } from '../shared/contracts.ts';
import { sendFrontError } from './front-errors.ts';
import { clientResponseHeaders, hasRequestBody, upstreamRequestHeaders } from './headers.ts';
import { HoldQueue, type HoldReason, type HoldTicket } from './held-requests.ts';
import type { DirectorLogger } from './logger.ts';
import type { DirectorMetrics } from './metrics.ts';
import type { ConnErrorSignaller } from './signals.ts';
import type { SyncBarrierClient, SyncRoute } from './sync-barrier.ts';
import type { UpstreamPools } from './upstream-pools.ts';
import { isLoadAnswer } from '../monitor/load-signal.ts';
import { SiteCounters, type UpstreamCounters } from './upstream-stats.ts';
import { pathOf, readPathMatcher, type ReadPathMatcher } from './read-paths.ts';
import { ReadYourWrites } from './read-your-writes.ts';

/**
 * The reverse proxy of one site: what its front listener runs for every request.
 *
 * Routing (DESIGN, "Rules that never break"): a modifying request (anything but
 * GET, HEAD, OPTIONS) goes only to the route's primary. A read goes to the primary
 * or a reader, the one with the fewest requests in flight (round-robin among equals:
 * a slow host gets fewer), but only to the primary when the route has no readers,
 * when its path is not in the route's `readPaths`, or when the client wrote and the
 * readers have not confirmed that write yet (read-your-writes.ts). A reader that
 * answers 421 (it does not hold what the read needs) has the read sent to the
 * primary instead: a read without body, so sending it again is safe.
 *
 * Failure handling rests on one fact undici gives us: whether the request was
 * written to a socket (`onRequestStart`) before the error.
 *
 * - Not written (connection refused, connect timeout, reset before the request,
 *   pool closed): the app never saw it, so it is safe to send again whatever the
 *   method. It goes to another allowed upstream of the current route if there is
 *   one, else it is held until a route with a higher epoch or another primary.
 * - Written, no answer yet (reset, closed, headers timeout): a read without body
 *   is sent once more (to another upstream, or held for the next route); a
 *   modifying request gets 503 US_OUTCOME_UNKNOWN, never a silent drop.
 * - Answer already streaming: the client connection is cut (a truncated answer
 *   must not look complete).
 *
 * Every connection failure is counted and signalled to the controller.
 *
 * Sync mode (route.sync set; DESIGN: "a write the client saw succeed is never lost"):
 * the answer of a modifying request that the primary answered with a status < 500 is
 * buffered, not streamed; once it has fully arrived (the app committed before it
 * answered) the storage processor of the primary volume is asked for the sync
 * barrier, and only then is the answer sent. Not confirmed: strict → 503
 * US_SYNC_TIMEOUT, degrade → sent anyway and counted. Answers >= 500 and reads are
 * not held (nothing to protect). The route in force when the request was *sent*
 * decides, so a route change cannot skip the barrier of a write already sent.
 */

/** An upstream as one site uses it. */
interface Target {
  readonly name: string;
  pool: Pool;
  readonly counters: UpstreamCounters;
  readonly duration: { observe(seconds: number): void };
}

export interface SiteProxyOptions {
  site: string;
  holdMaxRequests: number;
  holdTimeoutMs: number;
  pools: UpstreamPools;
  signaller: ConnErrorSignaller;
  metrics: DirectorMetrics;
  logger: DirectorLogger;
  barrier: SyncBarrierClient;
}

export class SiteProxy {
  readonly site: string;
  readonly counters = new SiteCounters();
  readonly hold: HoldQueue<Exchange>;
  private route: RouteTable | null = null;
  private primary: Target | null = null;
  /** primary + readers, for GET/HEAD/OPTIONS. */
  private readTargets: Target[] = [];
  private readers: Target[] = [];
  private readPaths: ReadPathMatcher = () => true;
  /** Read your writes (cookies on modifying answers, marks against the readers). */
  readonly ryw: ReadYourWrites;
  private rr = 0;
  private stopping = false;
  private readonly targets = new Map<string, Target>();

  constructor(private readonly opts: SiteProxyOptions) {
    this.site = opts.site;
    this.hold = new HoldQueue(opts.holdMaxRequests);
    this.ryw = new ReadYourWrites(opts.site, opts.logger);
  }

  /** Is `t` the current route's primary? (a 421 from anything else is retried there) */
  isPrimary(t: Target): boolean {
    return t === this.primary;
  }

  get epoch(): number {
    return this.route?.epoch ?? 0;
  }

  /** The front listener's request handler. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.dispatch(new Exchange(this, req, res));
  };

  /**
   * Installs a new route (already epoch-checked by the RouteStore) and releases,
   * in arrival order, the held requests it unblocks.
   */
  setRoute(route: RouteTable): void {
    this.route = route;
    this.primary = route.primary === null ? null : this.target(route.primary);
    this.readers = this.primary === null ? [] : route.readers.map((r) => this.target(r));
    this.readTargets = this.primary === null ? [] : [this.primary, ...this.readers];
    this.readPaths = readPathMatcher(route.readPaths);
    this.ryw.configure(route.ryw ?? null, this.readers.length > 0);
    this.rr = 0;
    const released = this.hold.release(route);
    for (const ex of released) {
      ex.ticket = null;
      this.counters.released++;
      this.dispatch(ex);
    }
    this.opts.logger.info({ site: this.site, epoch: route.epoch, primary: route.primary, readers: route.readers, released: released.length }, 'route set');
  }

  /** The route's sync mode, or null (async). */
  get sync(): SyncRoute | null {
    return this.route?.sync ?? null;
  }

  /**
   * A held sync answer has fully arrived: ask for the barrier, then send it or 503.
   * Bounded: the barrier client never waits longer than timeoutMs + a margin.
   */
  syncRelease(ex: Exchange, sync: SyncRoute): void {
    const c = this.counters.sync;
    c.waits++;
    const t0 = performance.now();
    this.opts.barrier
      .barrier(this.site, sync)
      .then((r) => {
        const ms = performance.now() - t0;
        c.latency.record(ms);
        this.opts.metrics.syncWait.labels({ site: this.site, outcome: r.outcome }).observe(ms / 1000);
        if (r.outcome === 'unreachable') c.unreachable++;
        const confirmed = r.outcome === 'sync';
        // `degrade` releases only what the primary's storage processor says it released
        // (the replica is lost, the volume is degraded). A storage processor that cannot be
        // asked says nothing: its machine may be going down with the write, so the answer
        // stays unknown, whatever the setting (a 201 here could be a lost order).
        if (confirmed || r.outcome === 'degraded') {
          if (!confirmed) c.degraded++;
          ex.releaseHeld();
          return;
        }
        if (r.outcome === 'unreachable') {
          this.opts.logger.warn(
            { site: this.site, reason: r.reason, waitedMs: Math.round(ms) },
            'sync barrier could not be asked; answered 503 US_OUTCOME_UNKNOWN',
          );
          ex.failHeld(
            `the write was applied by the app, but the storage processor that holds it could not be asked whether the replica has it (${r.reason ?? r.outcome}); it may be lost if that machine is failing: check (e.g. look it up) before sending it again`,
            'US_OUTCOME_UNKNOWN',
          );
          return;
        }
        c.timeouts++;
        this.opts.logger.warn(
          { site: this.site, reason: r.reason, waitedMs: Math.round(ms) },
          'sync write not confirmed by the replica; answered 503 US_SYNC_TIMEOUT',
        );
        ex.failHeld(
          `the write was applied by the app, but the replica did not confirm it within ${sync.timeoutMs} ms (${r.reason ?? r.outcome}); it may be lost if the primary fails now: check (e.g. look it up) before sending it again`,
        );
      })
      .catch((err: unknown) => {
        // The barrier never rejects; a fault in the release above must still answer the held write.
        this.opts.logger.error({ site: this.site, err: String(err) }, 'sync release failed; answered 503');
        ex.failHeld(
          'the write was applied by the app, but its replication could not be confirmed (an internal error of the director): check (e.g. look it up) before sending it again',
        );
      });
  }

  /** Sends `ex` to an upstream the current route allows, or holds it. */
  dispatch(ex: Exchange): void {
    if (ex.failed !== null && ex.failedEpoch < this.epoch) ex.failed = null; // failures under an older route do not count
    const t = this.pick(ex);
    if (t !== null) {
      ex.send(t, this.epoch);
      return;
    }
    const reason: HoldReason = this.primary === null ? { kind: 'no-primary' } : { kind: 'upstream-failed', epoch: this.epoch, upstream: this.primary.name };
    this.holdExchange(ex, reason);
  }

  private pick(ex: Exchange): Target | null {
    const primary = this.primary;
    if (primary === null) return null;
    const failed = ex.failed;
    const primaryOrNull = failed !== null && failed.includes(primary.name) ? null : primary;
    if (ex.modifying) return primaryOrNull;
    if (this.readers.length === 0 || ex.primaryOnly || !this.readPaths(ex.path) || !this.ryw.mayUseReaders(ex.cookie)) return primaryOrNull;
    // Fewest in flight wins; the round-robin start breaks ties.
    const targets = this.readTargets;
    const n = targets.length;
    let best: Target | null = null;
    for (let k = 0; k < n; k++) {
      const t = targets[(this.rr + k) % n]!;
      if (failed !== null && failed.includes(t.name)) continue;
      if (best === null || t.counters.inflight < best.counters.inflight) best = t;
    }
    this.rr = this.rr + 1 >= n ? 0 : this.rr + 1;
    return best;
  }

  private holdExchange(ex: Exchange, reason: HoldReason): void {
    if (this.stopping) {
      ex.fail(503, 'US_DIRECTOR_STOPPING', 'the director is shutting down');
      return;
    }
    const now = performance.now();
    // The bound is on the total time a request waits, across every hold.
    if (ex.holdDeadline === 0) ex.holdDeadline = now + this.opts.holdTimeoutMs;
    const remaining = ex.holdDeadline - now;
    if (remaining <= 0) {
      this.onHoldTimeout(ex);
      return;
    }
    const ticket = this.hold.add(ex, reason, remaining, this.onHoldTimeout);
    if (ticket === null) {
      this.counters.holdRejected++;
      ex.fail(
        503,
        'US_HOLD_FULL',
        `site ${this.site} has no routable primary and ${this.opts.holdMaxRequests} requests are already waiting; the request did not reach the app, send it again`,
      );
      return;
    }
    ex.ticket = ticket;
    this.counters.held++;
  }

  private readonly onHoldTimeout = (ex: Exchange): void => {
    ex.ticket = null;
    this.counters.heldTimedOut++;
    ex.fail(
      503,
      'US_HOLD_TIMEOUT',
      `site ${this.site} had no routable primary for ${this.opts.holdTimeoutMs} ms; the request did not reach the app, send it again`,
    );
  };

  /** An upstream refused or broke a connection: count it and tell the controller. */
  connError(t: Target, err: Error): void {
    t.counters.recordConnError();
    this.opts.signaller.signal(this.site, t.name, errorCode(err));
  }

  /** Answers every held request 503 and holds nothing more (shutdown). */
  stop(): void {
    this.stopping = true;
    this.ryw.stop();
    for (const ex of this.hold.drain()) {
      ex.ticket = null;
      ex.fail(503, 'US_DIRECTOR_STOPPING', 'the director is shutting down; the request did not reach the app, send it again');
    }
  }

  /** Names of the upstreams the current route uses (to keep their pools). */
  upstreamsInUse(): string[] {
    return this.readTargets.map((t) => t.name);
  }

  private target(name: string): Target {
    let t = this.targets.get(name);
    if (t === undefined) {
      t = {
        name,
        pool: this.opts.pools.get(name),
        counters: this.counters.upstream(name),
        duration: this.opts.metrics.duration.labels({ site: this.site, upstream: name }),
      };
      this.targets.set(name, t);
    } else {
      t.pool = this.opts.pools.get(name); // a pool closed while unused is re-created
    }
    return t;
  }
}

/** Adds a Set-Cookie to the client's answer, keeping the app's own. */
function addSetCookie(headers: OutgoingHttpHeaders, cookie: string): void {
  const prev = headers['set-cookie'];
  headers['set-cookie'] = prev === undefined ? [cookie] : Array.isArray(prev) ? [...prev, cookie] : [String(prev), cookie];
}

function isReadOnly(method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

function errorCode(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.name;
}

/** Errors undici raises about the request itself, not the connection: the client's fault. */
function isRequestError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED';
}

/**
 * One client request on its way through the director: the undici dispatch
 * handler of each attempt, its hold ticket while held, and the client response.
 * One object per request; the attempt state is reset by `send()`.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly modifying: boolean;
  /** The request's path (no query): matched against the route's readPaths. */
  readonly path: string;
  /** The client's Cookie header (read your writes). */
  readonly cookie: string | string[] | undefined;
  /** A reader answered 421: this read goes to the primary only. */
  primaryOnly = false;
  /** The current attempt's answer is a reader's 421, to be dropped and retried on the primary. */
  private misdirected = false;
  private readonly hasBody: boolean;
  private readonly headers: string[];
  private body: PassThrough | null = null;
  private target: Target | null = null;
  /** The current attempt was written to a socket: the upstream may have acted on it. */
  private sent = false;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  /** The answer says the app sheds load (429, 503 with Retry-After). */
  private shed = false;
  private t0 = 0;
  private sentEpoch = 0;
  /** Upstreams that failed this request under route epoch `failedEpoch`. */
  failed: string[] | null = null;
  failedEpoch = 0;
  private retried = false;
  /** performance.now() after which holding must stop; 0 = never held. */
  holdDeadline = 0;
  ticket: HoldTicket | null = null;
  /** Answered, or the client went away: nothing more is done. */
  private done = false;
  /** The upstream counted this attempt in its `inflight` (until the client is answered). */
  private inflightOn: Target | null = null;
  /** Sync mode of the route the current attempt was sent under (modifying requests only). */
  private sync: SyncRoute | null = null;
  /** The upstream's answer, buffered for the sync barrier (null: streamed through). */
  private held: { status: number; message: string | undefined; headers: OutgoingHttpHeaders; chunks: Buffer[]; size: number } | null = null;

  constructor(
    private readonly site: SiteProxy,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {
    const headers: IncomingHttpHeaders = req.headers;
    this.modifying = !isReadOnly(req.method);
    this.path = pathOf(req.url);
    this.cookie = headers.cookie;
    this.hasBody = hasRequestBody(headers);
    this.headers = upstreamRequestHeaders(req.rawHeaders, req.socket.remoteAddress, headers.connection);
    res.once('close', this.onClientClose);
  }

  send(t: Target, epoch: number): void {
    this.endInflight();
    this.target = t;
    this.sent = false;
    this.controller = null;
    this.sentEpoch = epoch;
    this.sync = this.modifying ? this.site.sync : null;
    this.held = null;
    this.misdirected = false;
    t.counters.inflight++;
    this.inflightOn = t;
    this.t0 = performance.now();
    let body: PassThrough | null = null;
    if (this.hasBody) {
      // A PassThrough between the client and undici: undici destroys the body it
      // was given when an upload fails, and destroying the client's request
      // would cut the connection we still owe a 503 on. Unsent, it is reused.
      if (this.body === null) {
        this.body = new PassThrough();
        this.req.pipe(this.body);
      }
      body = this.body;
    }
    t.pool.dispatch({ path: this.req.url ?? '/', method: this.req.method as Dispatcher.HttpMethod, headers: this.headers, body }, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.done) {
      controller.abort(new Error('client closed the connection'));
      return;
    }
    this.controller = controller;
    this.sent = true;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200 || this.done) return; // 1xx informational: Node's server deals with its own
    this.status = statusCode;
    this.shed = statusCode >= 429 && isLoadAnswer(statusCode, headers['retry-after'] !== undefined);
    if (statusCode === 421 && !this.modifying && !this.hasBody && !this.primaryOnly && !this.site.isPrimary(this.target!)) {
      // A reader that does not hold what this read needs: its answer is dropped, the read goes to the primary.
      this.misdirected = true;
      return;
    }
    const out = clientResponseHeaders(headers);
    if (this.modifying && this.site.ryw.enabled) addSetCookie(out, this.site.ryw.noteWrite());
    if (this.sync !== null && statusCode < 500) {
      this.held = { status: statusCode, message: statusMessage || undefined, headers: out, chunks: [], size: 0 };
      return;
    }
    this.res.writeHead(statusCode, statusMessage || undefined, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done || this.misdirected) return;
    if (this.held !== null) {
      // Write answers are small (an order's JSON); a large one is held in memory all the same.
      this.held.chunks.push(chunk);
      this.held.size += chunk.length;
      return;
    }
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.done) return;
    if (this.misdirected) {
      this.misdirected = false;
      this.primaryOnly = true;
      this.endInflight();
      this.site.counters.misdirected++;
      this.site.dispatch(this);
      return;
    }
    this.done = true;
    const t = this.target!;
    const ms = performance.now() - this.t0;
    t.counters.recordResponse(this.status, ms, this.shed); // the app's latency, without the barrier
    t.counters.kinds.record(this.req.method ?? 'GET', this.path, this.req.url ?? '/', this.status, this.shed, this.hasBody);
    t.duration.observe(ms / 1000);
    if (this.held !== null && this.sync !== null) {
      this.site.syncRelease(this, this.sync);
      return;
    }
    this.res.end();
    this.endInflight();
  }

  /** The sync barrier let the held answer go: send it as the app gave it. */
  releaseHeld(): void {
    const h = this.held;
    this.held = null;
    this.endInflight();
    if (h === null || this.res.destroyed || this.res.writableEnded) return;
    const body = h.chunks.length === 1 ? h.chunks[0]! : Buffer.concat(h.chunks, h.size);
    const headers = h.headers;
    if (headers['content-length'] === undefined && this.req.method !== 'HEAD' && h.status !== 204 && h.status !== 304) headers['content-length'] = body.length;
    this.res.writeHead(h.status, h.message, headers);
    this.res.end(body);
  }

  /** Strict sync mode: the write was not confirmed; the client gets 503 US_SYNC_TIMEOUT. */
  failHeld(message: string, code: 'US_SYNC_TIMEOUT' | 'US_OUTCOME_UNKNOWN' = 'US_SYNC_TIMEOUT'): void {
    this.held = null;
    this.endInflight();
    if (this.res.destroyed || this.res.writableEnded) return;
    sendFrontError(this.res, 503, code, message);
  }

  private endInflight(): void {
    const t = this.inflightOn;
    if (t === null) return;
    this.inflightOn = null;
    t.counters.inflight--;
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return;
    const t = this.target!;
    const site = this.site;
    this.endInflight();
    this.held = null; // a held answer that broke mid-body is never sent: handled as no answer below
    if (this.res.headersSent) {
      // Broken mid-answer: the status is out, so the only signal left is a cut connection.
      this.done = true;
      site.connError(t, err);
      this.res.destroy(err);
      return;
    }
    if (isRequestError(err)) {
      this.fail(400, 'US_BAD_REQUEST', `the request cannot be forwarded: ${err.message}`);
      return;
    }
    site.connError(t, err);
    if (this.failed === null || this.failedEpoch !== this.sentEpoch) {
      this.failed = [];
      this.failedEpoch = this.sentEpoch;
    }
    this.failed.push(t.name);
    if (!this.sent) {
      site.dispatch(this); // never reached the app: safe for every method
      return;
    }
    if (!this.modifying && !this.hasBody && !this.retried) {
      this.retried = true;
      site.counters.retried++;
      site.dispatch(this);
      return;
    }
    if (this.modifying) {
      site.counters.outcomeUnknown++;
      this.fail(
        503,
        'US_OUTCOME_UNKNOWN',
        `the connection to the app broke after the ${this.req.method} request was sent (${errorCode(err)}); it may or may not have been applied: check before sending it again`,
      );
    } else {
      this.fail(503, 'US_UPSTREAM_FAILED', `the connection to the app broke twice (${errorCode(err)})`);
    }
  }

  /** Answers the client with the director's own error (see front-errors.ts). */
  fail(status: number, code: Parameters<typeof sendFrontError>[2], message: string): void {
    if (this.done) return;
    this.done = true;
    this.endInflight();
    sendFrontError(this.res, status, code, message);
    if (this.body !== null && !this.body.destroyed) {
      this.req.unpipe(this.body);
      this.body.destroy();
    }
  }

  private readonly onClientClose = (): void => {
    if (this.done) return;
    // The client went away before its answer: stop waiting and stop the upstream request.
    this.done = true;
    this.endInflight();
    if (this.ticket !== null) {
      this.site.hold.remove(this.ticket);
      this.ticket = null;
    }
    this.controller?.abort(new Error('client closed the connection'));
    this.body?.destroy();
  };
}
