import type { z } from 'zod';
import type { Finding } from './problems.ts';
import { sectionSchemas, topLevelSchema } from './schema.ts';
import type { ClusterInput, ControllerInput, DirectorInput, HostInput, NotifyInput, SiteInput, StorageInput } from './schema.ts';
import { salvage } from './salvage.ts';
import { zodFindings } from './zod-findings.ts';

/**
 * Validates the file section by section and entry by entry. Every problem becomes
 * a finding; valid entries are kept (`value`) even when others are broken, so the
 * reference checks can still run on them and the operator sees every problem at once.
 */
export interface Entry<T> {
  name: string;
  /** Position in file order (storage listen ports default to 7100 + index). */
  index: number;
  /**
   * The entry, defaults applied. When the entry had problems of its own (already
   * reported), the parts that were valid (see salvage.ts), or undefined when a
   * required part is unusable.
   */
  value?: T;
}

export interface ParsedSections {
  controller?: ControllerInput;
  cluster?: ClusterInput;
  director?: DirectorInput;
  storage: Entry<StorageInput>[];
  hosts: Entry<HostInput>[];
  pools: Entry<string[]>[];
  sites: Entry<SiteInput>[];
  notify: Entry<NotifyInput>[];
}

export function parseSections(data: unknown, findings: Finding[]): ParsedSections {
  const out: ParsedSections = { storage: [], hosts: [], pools: [], sites: [], notify: [] };
  if (data === undefined || data === null) {
    findings.push({ path: [], message: 'the file is empty; it needs at least storage, hosts and sites' });
    return out;
  }
  const top = topLevelSchema.safeParse(data);
  if (!top.success) {
    findings.push(...zodFindings(top.error, [], topLevelSchema, data));
    if (typeof data !== 'object' || Array.isArray(data)) return out;
  }
  const raw = data as Record<string, unknown>;
  out.controller = parseOne(sectionSchemas.controller, raw.controller, ['controller'], findings);
  out.cluster = parseOne(sectionSchemas.cluster, raw.cluster, ['cluster'], findings);
  out.director = parseOne(sectionSchemas.director, raw.director, ['director'], findings);
  out.storage = parseRecord(sectionSchemas.storage, raw.storage, 'storage', 'storage system (name: { path })', true, findings);
  out.hosts = parseRecord(sectionSchemas.host, raw.hosts, 'hosts', 'host (name: { address, storage })', true, findings);
  out.pools = parseRecord(sectionSchemas.pool, raw.pools, 'pools', 'pool (name: [host, ...])', false, findings);
  out.sites = parseRecord(sectionSchemas.site, raw.sites, 'sites', 'site (name: { front, app, primary, standby })', true, findings);
  out.notify = parseRecord(
    sectionSchemas.notify,
    raw.notify,
    'notify',
    'notification target (name: { webhook: { url } } or { command: { run } })',
    false,
    findings,
  );
  return out;
}

function parseOne<S extends z.ZodType>(schema: S, value: unknown, path: PropertyKey[], findings: Finding[]): z.output<S> | undefined {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  findings.push(...zodFindings(r.error, path, schema, value));
  const partial = salvage(schema, value);
  return partial.ok ? (partial.data as z.output<S>) : undefined;
}

function parseRecord<S extends z.ZodType>(
  schema: S,
  value: unknown,
  section: string,
  what: string,
  required: boolean,
  findings: Finding[],
): Entry<z.output<S>>[] {
  if (value === undefined || value === null) {
    if (required) findings.push({ path: [section], message: `is required: a map with at least one ${what}` });
    return [];
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    findings.push({ path: [section], message: `must be a map of ${what}` });
    return [];
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0 && required) findings.push({ path: [section], message: `must define at least one ${what}` });
  return entries.map(([name, v], index) => {
    if (!sectionSchemas.recordKey.safeParse(name).success) {
      findings.push({ path: [section, name], at: 'key', message: `bad name: ${sectionSchemas.nameMessage}` });
      return { name, index };
    }
    const parsed = parseOne(schema, v, [section, name], findings);
    return parsed === undefined ? { name, index } : { name, index, value: parsed };
  });
}
