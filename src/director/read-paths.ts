/**
 * Which request paths a site's readers may serve (`scale.readPaths`, carried in the
 * route as `readPaths`): an entry is an exact path (`/api/products`) or a prefix
 * ending in `*` (`/public/*`, `/*` = everything). The query string is not part of the
 * match. Absent or empty list: every path (the reader's own 421 then decides).
 */
export type ReadPathMatcher = (pathname: string) => boolean;

export function readPathMatcher(patterns: readonly string[] | undefined): ReadPathMatcher {
  if (!patterns || patterns.length === 0) return () => true;
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  if (prefixes.includes('/') || prefixes.includes('')) return () => true;
  return (pathname) => exact.has(pathname) || prefixes.some((p) => pathname.startsWith(p));
}

/** The path of a request target (`/a/b?x=1` → `/a/b`). */
export function pathOf(url: string | undefined): string {
  if (!url) return '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
