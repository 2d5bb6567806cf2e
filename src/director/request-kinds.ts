import type { RequestKindStats } from '../shared/contracts.ts';

/** Kinds kept per upstream; the rest are counted under `METHOD *`. */
const MAX_KINDS = 64;
/** Path segments kept in a route; deeper paths end in `/*`. */
const MAX_SEGMENTS = 4;
/** Failing requests kept per kind, and the longest kept. */
const MAX_SAMPLES = 3;
const MAX_SAMPLE_LENGTH = 512;
const DIGIT = /[0-9]/;

/**
 * The route a path belongs to, with a bounded number of distinct values: every
 * segment that holds a digit (an id, a date, a hash) becomes `:id`, a segment
 * longer than 40 characters too, and only the first 4 segments are kept.
 * `/api/orders/123` → `/api/orders/:id`. The common path (short, no digit, few
 * segments) is returned as is, without allocating.
 */
export function routeOf(path: string): string {
  if (path.length <= 41 && !DIGIT.test(path)) {
    let slashes = 0;
    for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) slashes++;
    if (slashes <= MAX_SEGMENTS) return path;
  }
  const parts = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) {
    if (i > MAX_SEGMENTS) {
      out.push('*');
      break;
    }
    const seg = parts[i]!;
    out.push(seg.length > 40 || DIGIT.test(seg) ? ':id' : seg);
  }
  return `/${out.join('/')}`;
}

class KindCounters {
  requests = 0;
  errors = 0;
  shed = 0;
  samples: string[] | null = null;
  constructor(
    readonly kind: string,
    readonly method: string,
  ) {}
}

/**
 * Answers of one upstream by kind of request (method and route): the figures
 * that tell errors that follow the request (one kind fails, the others and the
 * probe succeed) from errors of the host. On the request path: two Map lookups
 * per answer (method, route); samples only on failures.
 */
export class RequestKinds {
  /** method → route → counters: no string is built per answer. */
  private readonly byMethod = new Map<string, Map<string, KindCounters>>();
  private size = 0;

  /** One answer. `url`: path and query as the client sent them; `hasBody`: the request had a body. */
  record(method: string, path: string, url: string, status: number, shed: boolean, hasBody: boolean): void {
    let routes = this.byMethod.get(method);
    if (routes === undefined) {
      routes = new Map();
      this.byMethod.set(method, routes);
    }
    const route = routeOf(path);
    let k = routes.get(route);
    if (k === undefined) {
      const overflow = this.size >= MAX_KINDS;
      const r = overflow ? '*' : route;
      k = routes.get(r);
      if (k === undefined) {
        k = new KindCounters(`${method} ${r}`, method);
        routes.set(r, k);
        this.size++;
      }
    }
    k.requests++;
    if (shed) k.shed++;
    else if (status >= 500) {
      k.errors++;
      if ((method === 'GET' || method === 'HEAD') && !hasBody) {
        const s = k.samples ?? (k.samples = []);
        if (s.length >= MAX_SAMPLES) s.shift();
        s.push(url.length > MAX_SAMPLE_LENGTH ? url.slice(0, MAX_SAMPLE_LENGTH) : url);
      }
    }
  }

  snapshot(): RequestKindStats[] {
    const out: RequestKindStats[] = [];
    for (const routes of this.byMethod.values()) {
      for (const k of routes.values()) {
        out.push({ kind: k.kind, method: k.method, requests: k.requests, errors: k.errors, shed: k.shed, ...(k.samples ? { samples: [...k.samples] } : {}) });
      }
    }
    return out;
  }
}
