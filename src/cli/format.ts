import type { ControllerRole } from '../api/api-server.ts';
import type { StatusView } from '../controller/status-view.ts';
import type { EventRecord } from '../state/state-store.ts';

/** Human-readable renderings for the terminal. */

export function formatEvent(e: EventRecord): string {
  const t = new Date(e.at).toISOString().replace('T', ' ').replace('Z', '');
  return `${t}  ${e.kind.padEnd(18)} ${e.message}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatStatus(st: StatusView): string {
  const sites = [['SITE', 'STATE', 'EPOCH', 'FRONT', 'PRIMARY', 'HEALTHY', 'REPLICATION', 'LAG', 'READERS', 'NEXT']];
  for (const s of st.sites) {
    sites.push([
      s.name,
      s.state,
      String(s.epoch),
      s.front,
      `${s.primary.host} (${s.primary.address})`,
      s.primary.healthy ? 'yes' : 'no',
      `${s.replication.mode} → ${s.replication.to ?? '-'} ${s.replication.state}`,
      s.replication.lagMs === null ? '-' : `${s.replication.lagMs} ms`,
      // Read-only hosts, `host` when serving and healthy, else with its state.
      s.readers.map((r) => `${r.host}${r.state && r.state !== 'serving' ? ` (${r.state})` : r.healthy ? '' : ' (unhealthy)'}`).join(', ') || '-',
      s.next ? `${s.next.host} (${s.next.storage})` : '-',
    ]);
  }
  // Every database of every site's primary volume: how it is replicated.
  const dbs = [['SITE', 'DATABASE', 'MODE', 'REPLICATED BY', 'STATE', 'LAG']];
  for (const s of st.sites) {
    for (const d of s.databases ?? []) {
      dbs.push([
        s.name,
        d.path,
        d.mode,
        d.method === 'none' ? 'not replicated' : d.method,
        d.protected ? d.state : `${d.state} (unprotected)`,
        `${d.lagMs} ms`,
      ]);
    }
  }
  const hosts = [['HOST', 'ADDRESS', 'POWER', 'PID', 'STORAGE', 'SITES']];
  for (const h of st.hosts) hosts.push([h.name, h.address, h.power, h.pid === null ? '-' : String(h.pid), h.storage, h.sites.join(',') || '-']);
  // The command each primary runs, templates rendered for its host.
  const commands = st.sites.filter((s) => s.primary.command).map((s) => `${s.name} on ${s.primary.host} runs: ${s.primary.command!.map(shellWord).join(' ')}`);
  return `${controllerLine(st)}${table(sites)}\n${commands.length ? `\n${commands.join('\n')}\n` : ''}\n${dbs.length > 1 ? `${table(dbs)}\n\n` : ''}${table(hosts)}`;
}

/** Where several controllers elect a leader: which one answered, and who leads. */
function controllerLine(st: StatusView & { controller?: ControllerRole }): string {
  const c = st.controller;
  if (!c) return '';
  const leads =
    c.role === 'leader'
      ? `controller ${c.name} leads (term ${c.token})`
      : c.leader
        ? `controller ${c.name} follows ${c.leader}${c.leaderApi ? ` (${c.leaderApi})` : ''}`
        : `controller ${c.name}: no controller leads`;
  const store = c.storeUnavailable
    ? `; etcd has not answered since ${new Date(c.storeUnavailable.since).toISOString()} (${c.storeUnavailable.error}): no automatic action`
    : '';
  return `${leads}${store}\n\n`;
}

/** An argv element as a shell would need it written (quoted when it has spaces or quotes). */
function shellWord(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}
