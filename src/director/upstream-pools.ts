import { Pool } from 'undici';

/**
 * One undici Pool of keep-alive HTTP/1.1 connections per upstream (`host:port`),
 * shared by every site routed there. undici was chosen over node:http's Agent for
 * speed and because its request lifecycle tells exactly whether a request was
 * written to a socket (`onRequestStart`) before an error: the director's
 * refused-versus-outcome-unknown decision rests on that.
 *
 * Pools no route names any more are closed gracefully (in-flight requests end);
 * `destroyAll()` at shutdown ends everything.
 */

export interface PoolOptions {
  /** Connections per upstream. @default 256 */
  connections?: number;
  /** A connection that is not established by then counts as refused. @default 2000 */
  connectTimeoutMs?: number;
  /** Time for the upstream to send response headers. @default 60000 */
  headersTimeoutMs?: number;
  /** Longest silence inside a response body. @default 60000 */
  bodyTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this (undici also honours the server's hint). @default 4000 */
  keepAliveTimeoutMs?: number;
}

export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly opts: PoolOptions = {}) {}

  get(upstream: string): Pool {
    let p = this.pools.get(upstream);
    if (p === undefined) {
      p = new Pool(`http://${upstream}`, {
        connections: this.opts.connections ?? 256,
        pipelining: 1,
        connect: { timeout: this.opts.connectTimeoutMs ?? 2000 },
        headersTimeout: this.opts.headersTimeoutMs ?? 60_000,
        bodyTimeout: this.opts.bodyTimeoutMs ?? 60_000,
        keepAliveTimeout: this.opts.keepAliveTimeoutMs ?? 4000,
      });
      this.pools.set(upstream, p);
    }
    return p;
  }

  /** Closes (gracefully) the pools of upstreams not in `inUse`. */
  retain(inUse: ReadonlySet<string>): void {
    for (const [name, p] of this.pools) {
      if (inUse.has(name)) continue;
      this.pools.delete(name);
      p.close().catch(() => {
        /* already closed or destroyed */
      });
    }
  }

  async destroyAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(all.map((p) => p.destroy()));
  }
}
