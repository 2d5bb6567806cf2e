import { z } from 'zod';
import type { RouteTable } from '../shared/contracts.ts';
import { UnderstudyError } from '../shared/errors.ts';
import { parseBody } from '../shared/http-json.ts';

/**
 * The director's routes: one RouteTable per site, written only by the controller
 * through `PUT /v1/routes/:site`. The epoch is a fencing token: a route whose
 * epoch is lower than the one the director holds is refused (US_STALE_EPOCH), so a
 * controller that lost its leadership, or a delayed retry of an old command, can
 * never send writes back to a fenced primary. An equal epoch may update the route
 * (the controller re-sends it after a restart, or changes readers).
 *
 * Until a site's first route arrives, the site has no route and the director holds
 * its requests, exactly as it does while `primary` is null.
 */

/** `host:port`, `[v6]:port`: what the controller names an upstream by. */
const upstreamSchema = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.2.1:3000')
  .refine((s) => {
    const p = Number(s.slice(s.lastIndexOf(':') + 1));
    return p > 0 && p < 65536;
  }, 'port must be 1..65535');

export const routeTableSchema = z
  .object({
    site: z.string().min(1).optional(),
    epoch: z.number().int().min(0),
    primary: upstreamSchema.nullable(),
    readers: z.array(upstreamSchema).default([]),
    // Sync mode (see RouteTable.sync in contracts.ts); null or absent = async.
    sync: z
      .object({
        storageUrl: z
          .string()
          .url()
          .refine((u) => /^https?:\/\//.test(u), 'must be an http:// URL of a storage processor'),
        onReplicaLost: z.enum(['degrade', 'strict']),
        timeoutMs: z.number().int().positive().max(60_000),
      })
      .strict()
      .nullable()
      .optional(),
    // Paths readers may serve, and where read-your-writes asks whether readers caught up.
    readPaths: z.array(z.string().regex(/^\/[^\s]*$/, 'must be a path starting with /, optionally ending in *')).optional(),
    ryw: z
      .object({
        storageUrl: z
          .string()
          .url()
          .refine((u) => /^https?:\/\//.test(u), 'must be an http:// URL of a storage processor'),
        timeoutMs: z.number().int().positive().max(60_000),
      })
      .strict()
      .nullable()
      .optional(),
  })
  .strict();

/** Validates a PUT body for `site`; every problem names its field; nothing is applied on error. */
export function parseRouteTable(site: string, body: unknown): RouteTable {
  const r = parseBody(routeTableSchema, body);
  if (r.site !== undefined && r.site !== site) {
    throw new UnderstudyError('US_BAD_REQUEST', `site: body names site "${r.site}" but the URL names "${site}"`);
  }
  // A reader equal to the primary would double its share of reads; duplicates likewise.
  const readers = [...new Set(r.readers)].filter((u) => u !== r.primary);
  return Object.freeze({
    site,
    epoch: r.epoch,
    primary: r.primary,
    readers: Object.freeze(readers) as string[],
    ...(r.sync
      ? { sync: Object.freeze({ storageUrl: r.sync.storageUrl.replace(/\/+$/, ''), onReplicaLost: r.sync.onReplicaLost, timeoutMs: r.sync.timeoutMs }) }
      : {}),
    ...(r.readPaths ? { readPaths: Object.freeze([...r.readPaths]) as string[] } : {}),
    ...(r.ryw ? { ryw: Object.freeze({ storageUrl: r.ryw.storageUrl.replace(/\/+$/, ''), timeoutMs: r.ryw.timeoutMs }) } : {}),
  });
}

export type RouteListener = (site: string, next: RouteTable, prev: RouteTable | null) => void;

export class RouteStore {
  private readonly routes = new Map<string, RouteTable>();
  private readonly listeners: RouteListener[] = [];

  /** @param sites the configured sites; routes for any other site are refused (404). */
  constructor(private readonly configured: ReadonlySet<string>) {}

  /** The configured sites (a route may be given for each). */
  sites(): string[] {
    return [...this.configured];
  }

  get(site: string): RouteTable | null {
    return this.routes.get(site) ?? null;
  }

  list(): RouteTable[] {
    return [...this.routes.values()];
  }

  onChange(listener: RouteListener): void {
    this.listeners.push(listener);
  }

  /**
   * Applies a validated route. Throws US_NOT_FOUND for an unknown site and
   * US_STALE_EPOCH (409) when `next.epoch` is lower than the current epoch; the
   * current route is then left untouched. Listeners run synchronously, so held
   * requests are released before the PUT is answered.
   */
  set(next: RouteTable): RouteTable {
    if (!this.configured.has(next.site)) {
      throw new UnderstudyError('US_NOT_FOUND', `site "${next.site}" is not in the director's config (known: ${[...this.configured].join(', ') || 'none'})`);
    }
    const prev = this.routes.get(next.site) ?? null;
    if (prev !== null && next.epoch < prev.epoch) {
      throw new UnderstudyError(
        'US_STALE_EPOCH',
        `site ${next.site}: route epoch ${next.epoch} is older than the current epoch ${prev.epoch}; refused (a newer controller decision is in force)`,
        { site: next.site, epoch: prev.epoch, refused: next.epoch },
      );
    }
    this.routes.set(next.site, next);
    for (const l of this.listeners) l(next.site, next, prev);
    return next;
  }
}
