/**
 * The read-only portion of a site's volume (`volume.readonly`: the part of the data a
 * reader host can serve without modification): the part a reader copy holds. An entry ending in `/` names a
 * directory and everything under it (`public/`); any other entry names one file
 * (`catalog.db`; a database brings its -wal/-shm along, which are shipped as WAL
 * frames, never as files). Paths are relative to the volume root, '/'-separated.
 */
export function portionFilter(readonly: readonly string[]): (rel: string) => boolean {
  const dirs = readonly.filter((p) => p.endsWith('/')).map((p) => normalize(p));
  const files = new Set(readonly.filter((p) => !p.endsWith('/')).map((p) => normalize(p)));
  return (rel: string): boolean => {
    const r = normalize(rel);
    if (files.has(r)) return true;
    return dirs.some((d) => r.startsWith(d));
  };
}

function normalize(p: string): string {
  return p.replace(/\\/g, '/').replace(/^\.\//, '').replace(/^\/+/, '');
}
