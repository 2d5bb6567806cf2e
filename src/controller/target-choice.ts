import type { SiteConfig } from '../config/types.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { RunbookDeps } from './failover-runbook.ts';

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
    throw new UnderstudyError('US_NO_TARGET', `${site.name} has no replica to promote (it was unprotected); restore it from a backup`);
  }
  const candidates = (opts.requested ? [opts.requested] : site.standby)
    .filter((h) => h !== opts.failed)
    .filter((h) => deps.config.hosts[h]?.storage === opts.replicaStorage);
  if (opts.requested && candidates.length === 0) {
    throw new UnderstudyError('US_NO_TARGET', `${opts.requested} cannot take ${site.name}: it is not attached to ${opts.replicaStorage}, which holds the replica`);
  }
  let cold: string | null = null;
  for (const h of candidates) {
    if (deps.relay.status(h).power === 'on') {
      try {
        const st = await deps.clients.agentStatus(h, 300);
        if (!st.sites.some((s) => s.site === site.name && (s.state === 'running' || s.state === 'starting'))) return h;
      } catch {
        // A powered host whose agent does not answer is not a safe target.
      }
    } else if (cold === null) {
      cold = h;
    }
  }
  if (cold) return cold;
  throw new UnderstudyError('US_NO_TARGET', `no standby of ${site.name} attached to ${opts.replicaStorage} is available (standby: ${site.standby.join(', ')})`);
}
