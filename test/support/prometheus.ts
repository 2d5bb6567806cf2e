// @ts-expect-error: the parser ships no type declarations (its shape is typed below)
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

/** One metric family as parse-prometheus-text-format returns it (prom2json's shape). */
export interface MetricFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }[];
}

const parse = parsePrometheusTextFormat as (t: string) => MetricFamily[];

/** Parses a /metrics answer with a real Prometheus text-format parser (throws on what it cannot parse). */
export function parseMetrics(text: string): Map<string, MetricFamily> {
  return new Map(parse(text).map((f) => [f.name, f]));
}

/** The samples of a counter or gauge `name` whose labels include `labels`. */
export function samples(m: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): MetricFamily['metrics'] {
  const f = m.get(name);
  if (!f) return [];
  return f.metrics.filter((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
}

/**
 * One series of histogram `name`, named by ALL its labels but `le`: its count, sum and
 * buckets, or undefined when the text has no such series. The parser keeps only one
 * unlabelled series per histogram family (it folds labelled ones together), so the
 * series' lines are given to it alone, with the labels that name the series taken off.
 */
export function histogram(
  text: string,
  name: string,
  labels: Record<string, string>,
): { count: number; sum: number; buckets: Record<string, number> } | undefined {
  const family = parseMetrics(text).get(name);
  if (family?.type !== 'HISTOGRAM') return undefined;
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const own = (l: string) =>
    [`${name}_bucket{`, `${name}_count{`, `${name}_sum{`].some((p) => l.startsWith(p)) &&
    pairs.every((p) => l.includes(`{${p}`) || l.includes(`,${p}`)) &&
    (l.slice(l.indexOf('{') + 1, l.indexOf('}')).match(/="/g) ?? []).length === pairs.length + (l.startsWith(`${name}_bucket{`) ? 1 : 0);
  const lines = text
    .split('\n')
    .filter(own)
    .map((l) => {
      let out = l;
      for (const p of pairs) out = out.replace(`,${p}`, '').replace(`{${p}`, '{');
      return out.replace('{,', '{').replace('{}', '');
    });
  if (lines.length === 0) return undefined;
  const [one] = parse(`# TYPE ${name} histogram\n${lines.join('\n')}\n`);
  const s = one?.metrics[0];
  if (!s || s.count === undefined) return undefined;
  return { count: Number(s.count), sum: Number(s.sum), buckets: Object.fromEntries(Object.entries(s.buckets ?? {}).map(([k, v]) => [k, Number(v)])) };
}
