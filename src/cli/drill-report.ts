import type { DrillReport } from '../controller/drill-runbook.ts';

/** The drill report for the terminal: the verdict, the data age, each step's time, what is left. */
export function formatDrillReport(r: DrillReport): string {
  const lines = [`drill #${r.runbook} of ${r.site} on ${r.host} (${r.storage}): ${r.ok ? 'a failover would work' : 'FAILED'}`];
  if (!r.ok) lines.push(`  why: ${r.verdict}`);
  if (r.copy) {
    lines.push(
      `  copy of the replica: ${(r.copy.bytes / 1048576).toFixed(1)} MiB, ${r.copy.databases.length} database(s) ${r.copy.problems.length ? `FAILING verification (${r.copy.problems.map((p) => `${p.file}: ${p.detail ?? p.kind}`).join('; ')})` : 'verified'}, replication held ${r.copy.heldMs} ms`,
    );
    lines.push(
      `  data age of the copy: ${r.dataAgeMs === null ? 'unknown' : `at most ${r.dataAgeMs} ms behind the primary`} when taken (${new Date(r.copy.takenAt).toISOString()})`,
    );
  }
  lines.push(`  steps: ${r.steps.map((s) => `${s.step} ${s.ms} ms`).join(', ')}`);
  if (r.smoke) lines.push(`  smoke request: ${r.smoke.status} in ${r.smoke.ms} ms through the drill front ${r.front}`);
  if (r.totalMs !== null) lines.push(`  from the copy to the smoke answer: ${r.totalMs} ms`);
  lines.push(
    `  afterwards: ${r.poweredOff ? `${r.host} powered off again, ` : `${r.host} left as it was found, `}${r.leftBehind.length === 0 ? 'copy removed, drill front closed: nothing left behind' : `LEFT BEHIND: ${r.leftBehind.join('; ')}`}`,
  );
  return lines.join('\n');
}
