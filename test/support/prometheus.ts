// @ts-expect-error: the parser ships no type declarations (its shape is typed below)
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

/** One metric family as parse-prometheus-text-format returns it (prom2json's shape). */
export interface MetricFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }[];
}

/** Parses a /metrics answer with a real Prometheus text-format parser (throws on what it cannot parse). */
export function parseMetrics(text: string): Map<string, MetricFamily> {
  const families = (parsePrometheusTextFormat as (t: string) => MetricFamily[])(text);
  return new Map(families.map((f) => [f.name, f]));
}

/** The samples of `name` whose labels include `labels`. */
export function samples(m: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): MetricFamily['metrics'] {
  const f = m.get(name);
  if (!f) return [];
  return f.metrics.filter((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
}
