import type { SiteConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { RunbookDeps } from './runbook-journal.ts';

/** How long a powered host whose agent does not answer yet is waited for. */
const BOOTING_WAIT_MS = 5000;

/** true: the agent answers and does not run the site; false: it runs it already; null: no answer. */
async function agentIsFree(deps: RunbookDeps, host: string, site: string): Promise<boolean | null> {
  try {
    const st = await deps.clients.agentStatus(host, 300);
    return !st.sites.some((s) => s.site === site && (s.state === 'running' || s.state === 'starting'));
  } catch {
    return null;
  }
}

/**
 * Chooses the host a site fails over to: a host from the site's standby list (in
 * order), not the failed one, attached to the storage system that holds the
 * site's replica; a powered host whose agent answers (warm) beats one that must be
 * booted (cold). An operator's `--to` is honoured if it qualifies, else refused.
 */
export async function chooseTarget(
  deps: RunbookDeps,
  site: SiteConfig,
  opts: { failed: string; replicaStorage: string | null; requested?: string },
): Promise<string> {
  if (!opts.replicaStorage) {
    throw new UnderstudyError('US_NO_TARGET', `${site.name} has no replica to promote (it was unprotected): bring its primary host back (understudy power HOST on) or restore its volume from a backup by hand`);
  }
  const candidates = (opts.requested ? [opts.requested] : site.standby)
    .filter((h) => h !== opts.failed)
    .filter((h) => deps.config.hosts[h]?.storage === opts.replicaStorage);
  if (opts.requested && candidates.length === 0) {
    throw new UnderstudyError('US_NO_TARGET', `${opts.requested} cannot take ${site.name}: it is not attached to ${opts.replicaStorage}, which holds the replica`);
  }
  let cold: string | null = null;
  const booting: string[] = [];
  for (const h of candidates) {
    if (deps.relay.status(h).power === 'on') {
      const free = await agentIsFree(deps, h, site.name);
      if (free === true) return h;
      if (free === null) booting.push(h);
    } else if (cold === null) {
      cold = h;
    }
  }
  // A powered host whose agent does not answer yet may be booting: give it a moment
  // (booting it from cold would take as long), but never take a host that does not answer.
  const deadline = Date.now() + BOOTING_WAIT_MS;
  while (booting.length > 0 && Date.now() < deadline) {
    for (const h of booting) if ((await agentIsFree(deps, h, site.name)) === true) return h;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (cold) return cold;
  throw new UnderstudyError('US_NO_TARGET', `no standby of ${site.name} attached to ${opts.replicaStorage} is available (standby: ${site.standby.join(', ')})`);
}
