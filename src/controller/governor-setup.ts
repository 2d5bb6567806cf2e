import type { UnderstudyConfig } from '../config/types.ts';
import { ActionGovernor } from '../monitor/action-governor.ts';

/**
 * Least time between two automatic failovers of one site, unless
 * `UNDERSTUDY_FAILOVER_MIN_GAP_MS` says otherwise (tests and benches set it, often to 0,
 * to fail over back and forth). Long enough that a site does not ping-pong between
 * two sick hosts; short enough that a second, unrelated crash is not left unserved
 * for long (the deferral is an event that says when it retries).
 */
export const DEFAULT_FAILOVER_COOLDOWN_MS = 10_000;

/** Reads a non-negative integer from the environment; absent or invalid: `fallback`. */
function envMs(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

/**
 * The controller's one ActionGovernor. Trust needs `rise` good probes: with sites
 * of different `probe.rise`, the largest is used (a host may serve several sites, and
 * the strictest site decides). Overrides from the environment:
 *
 * - `UNDERSTUDY_FAILOVER_MIN_GAP_MS`: failover cooldown (default 10000)
 * - `UNDERSTUDY_FLAP_WINDOW_MS`: a failure this soon after regaining trust is a flap (default 300000)
 * - `UNDERSTUDY_FLAP_BACKOFF_MS`: hold-out after the first flap, doubling up to 10 min
 *   (default: the failover cooldown, so that `UNDERSTUDY_FAILOVER_MIN_GAP_MS=0`, which
 *   tests and benches set to fail over back and forth, also holds no host out)
 */
export function createGovernor(config: UnderstudyConfig, env: NodeJS.ProcessEnv = process.env): ActionGovernor {
  const rise = Math.max(1, ...Object.values(config.sites).map((s) => s.health.probe.rise));
  const failoverCooldownMs = envMs(env, 'UNDERSTUDY_FAILOVER_MIN_GAP_MS', DEFAULT_FAILOVER_COOLDOWN_MS);
  return new ActionGovernor({
    rise,
    // Issue 5: scale-out and scale-in cooldowns from the sites' `scale` (the shortest, as the
    // governor's cooldown is per action; the scale controller also keeps each site's own).
    cooldownMs: { failover: failoverCooldownMs, ...scaleCooldowns(config) },
    flapWindowMs: envMs(env, 'UNDERSTUDY_FLAP_WINDOW_MS', 300_000),
    // One failover cooldown after the first flap, doubling: a host that flaps is kept
    // out at least as long as the site would wait for its next failover anyway.
    backoffBaseMs: envMs(env, 'UNDERSTUDY_FLAP_BACKOFF_MS', failoverCooldownMs),
  });
}

/** The governor's scale-out cooldown is the shortest `scale.cooldown`, scale-in's the shortest `scale.stabilization` (issue 5). */
function scaleCooldowns(config: UnderstudyConfig): { 'scale-out'?: number; 'scale-in'?: number } {
  const sites = Object.values(config.sites).filter((s) => s.scale.max > 1);
  if (sites.length === 0) return {};
  return {
    'scale-out': Math.min(...sites.map((s) => s.scale.cooldownMs)),
    'scale-in': Math.min(...sites.map((s) => s.scale.stabilizationMs ?? 30_000)),
  };
}
