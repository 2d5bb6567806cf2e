import fs from 'node:fs';
import path from 'node:path';
import type { UnderstudyConfig } from '../config/types.ts';
import { LocalRelay, type ReclaimedHost } from '../power/local-relay.ts';
import { StateStore } from '../state/state-store.ts';

/**
 * The hosts of an embedded `up`, seen from `up` itself (while no controller runs):
 * taken back when an earlier run left them, powered off when `up` stops. Through the
 * relay driver, which alone knows what a host's power is.
 */

function withRelay<T>(config: UnderstudyConfig, fn: (relay: LocalRelay, store: StateStore) => Promise<T>): Promise<T | null> {
  if (!fs.existsSync(path.join(config.controller.stateDir, 'understudy.db'))) return Promise.resolve(null);
  const store = new StateStore(config.controller.stateDir);
  const relay = new LocalRelay(config, store, path.join(config.controller.stateDir, 'logs'));
  return fn(relay, store).finally(() => store.close());
}

export interface PowerOffReport {
  off: string[];
  /** Hosts whose cut could not be confirmed, with why: their records are kept for the next `up`. */
  unconfirmed: { host: string; message: string }[];
}

/**
 * A clean stop: every host the relays know of is cut and confirmed gone (all at
 * once, CONFIRM_TIMEOUT_MS at most), and the relays forget them (the next `up` boots
 * the `boot` hosts again); serving sites and sites that were down are marked
 * `starting`, so that the next `up` starts them on the primary they had (the copy
 * that is current: promoted, or never replaced). A host whose cut is not confirmed
 * keeps its record, and the sites stay as they are: the next `up` finds it.
 */
export async function powerOffAllHosts(config: UnderstudyConfig): Promise<PowerOffReport> {
  const report = await withRelay(config, async (relay, store) => {
    const r: PowerOffReport = { off: [], unconfirmed: [] };
    await Promise.all(
      store.listRelays().map(async (rec) => {
        try {
          const was = rec.pgid !== null && relay.status(rec.host).power === 'on';
          await relay.off(rec.host);
          store.forgetRelay(rec.host);
          if (was) r.off.push(rec.host);
        } catch (e) {
          r.unconfirmed.push({ host: rec.host, message: (e as Error).message });
        }
      }),
    );
    if (r.unconfirmed.length === 0) {
      for (const s of store.listSites()) if (s.state === 'serving' || s.state === 'degraded' || s.state === 'down') store.setSiteState(s.site, 'starting');
    }
    r.off.sort();
    return r;
  });
  return report ?? { off: [], unconfirmed: [] };
}

/** Hosts an earlier run left running: adopted or powered off (LocalRelay.reclaim). */
export async function reclaimHosts(config: UnderstudyConfig): Promise<ReclaimedHost[]> {
  return (await withRelay(config, (relay) => relay.reclaim())) ?? [];
}
