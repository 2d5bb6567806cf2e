import fs from 'node:fs';
import path from 'node:path';
import type { UnderstudyConfig } from '../config/types.ts';
import { UnderstudyError, errorFromReply, isUnderstudyError } from '../shared/errors.ts';
import { seedProblem } from '../shared/seed.ts';
import { StateStore } from '../state/state-store.ts';

/**
 * How `up` tells an operator why a start failed: the cause with its stable code,
 * and the evidence beneath it, instead of "controller exited during start".
 *
 * Causes found by the controller (an app that exits, a probe never healthy, a port
 * in use, a seed the storage processor cannot find) reach `up` through the
 * controller's `controller-start-failed` event, which carries the code; `up` reads
 * it from the state store as soon as the controller has exited.
 */

/** The cause the controller recorded for its failed start since `since`, as an UnderstudyError; null when it recorded none. */
export function controllerStartFailure(config: UnderstudyConfig, since: number): UnderstudyError | null {
  if (!fs.existsSync(path.join(config.controller.stateDir, 'understudy.db'))) return null;
  let store: StateStore | null = null;
  try {
    store = new StateStore(config.controller.stateDir);
    let found: { code: string; error: string; details: unknown } | null = null;
    let after = 0;
    for (;;) {
      const page = store.listEvents({ afterId: after, limit: 1000 });
      for (const e of page) {
        if (e.kind === 'controller-start-failed' && e.at >= since) {
          found = { code: String(e.data.code ?? 'US_INTERNAL'), error: String(e.data.error ?? e.message), details: e.data.details ?? null };
        }
        after = e.id;
      }
      if (page.length < 1000) break;
    }
    return found ? errorFromReply({ code: found.code, message: found.error, details: found.details ?? undefined }, found.error) : null;
  } catch {
    return null;
  } finally {
    store?.close();
  }
}

/** The lines `up` prints for a failed start: the summary with its code, then the evidence (the message's further lines). */
export function startFailureLines(e: unknown): string[] {
  const message = e instanceof Error ? e.message : String(e);
  const code = isUnderstudyError(e) ? e.code : typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : null;
  const [first = '', ...rest] = message.split('\n');
  return [`understudy: start failed: ${first}${code ? ` [${code}]` : ''}`, ...rest];
}

/**
 * The error `up` ends with once it has printed the evidence: the same code, only
 * the summary line (the CLI prints `understudy: MESSAGE [CODE]` last).
 */
export function startFailureSummary(e: unknown): unknown {
  if (!isUnderstudyError(e) || !e.message.includes('\n')) return e;
  return new UnderstudyError(e.code, e.message.split('\n')[0]!, e.details);
}

/**
 * Before anything starts: a site with no volume on any storage system needs its
 * seed, and a seed that is not a directory stops the start (US_SEED_MISSING).
 */
export function checkSeeds(config: UnderstudyConfig): void {
  for (const site of Object.values(config.sites)) {
    if (site.app.seed === undefined) continue;
    const hasVolume = Object.values(config.storage).some((s) => fs.existsSync(path.join(s.path, 'volumes', site.name)));
    if (hasVolume) continue;
    const problem = seedProblem(site.app.seed, site.name);
    if (problem) throw problem;
  }
}
