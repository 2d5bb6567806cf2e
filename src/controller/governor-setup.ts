import type { UnderstudyConfig } from '../config/types.ts';
import { ActionGovernor, type GovernorMemory } from './action-governor.ts';
import type { StateStore } from '../state/state-store.ts';

/** The governor's memory in the state store. */
const GOVERNOR_MEMORY = 'governor';
import { UnderstudyError } from '../shared/errors.ts';

/**
 * Environment overrides of `controller.failover`, for tests and benches that fail
 * over back and forth (often with `0`): whole milliseconds. Set, they win over the
 * config; a value that is not a whole number ≥ 0 stops the controller at start
 * (US_BAD_ENV), never falls back silently.
 */
export const GOVERNOR_ENV = {
  cooldownMs: 'UNDERSTUDY_FAILOVER_MIN_GAP_MS',
  flapWindowMs: 'UNDERSTUDY_FLAP_WINDOW_MS',
  flapBackoffMs: 'UNDERSTUDY_FLAP_BACKOFF_MS',
} as const;

/** A whole number of milliseconds ≥ 0 from the environment; undefined when unset. */
function envMs(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw.trim());
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new UnderstudyError(
      'US_BAD_ENV',
      `${name}=${JSON.stringify(raw)}: must be a whole number of milliseconds, 0 or more (like 10000); unset it to use controller.failover from the config`,
      { name, value: raw },
    );
  }
  return n;
}

/**
 * The controller's one ActionGovernor, from `controller.failover` (and the
 * environment overrides above). Trust needs `rise` good probes: with sites of
 * different `probe.rise`, the largest is used (a host may serve several sites, and the
 * strictest site decides). The flap backoff follows the cooldown unless set: a host
 * that flaps is kept out at least as long as the site would wait for its next failover
 * anyway, and a cooldown of 0 (tests failing over back and forth) holds no host out.
 */
export function createGovernor(
  config: UnderstudyConfig,
  env: NodeJS.ProcessEnv = process.env,
  store?: Pick<StateStore, 'getMemory' | 'putMemory'>,
): ActionGovernor {
  const rise = Math.max(1, ...Object.values(config.sites).map((s) => s.health.probe.rise));
  const cfg = config.controller.failover;
  const cooldownMs = envMs(env, GOVERNOR_ENV.cooldownMs);
  const failoverCooldownMs = cooldownMs ?? cfg.cooldownMs;
  return new ActionGovernor({
    rise,
    cooldownMs: { failover: failoverCooldownMs, ...scaleCooldowns(config) },
    flapWindowMs: envMs(env, GOVERNOR_ENV.flapWindowMs) ?? cfg.flapWindowMs,
    // An overridden cooldown carries the backoff with it, as in the config.
    backoffBaseMs: envMs(env, GOVERNOR_ENV.flapBackoffMs) ?? (cooldownMs !== undefined ? cooldownMs : cfg.flapBackoffMs),
    // Host trust and cooldowns outlive this controller: a restarted one, or the next leader, remembers them.
    ...(store
      ? {
          memory: {
            load: () => store.getMemory<GovernorMemory>(GOVERNOR_MEMORY) ?? null,
            save: (m: GovernorMemory) => store.putMemory(GOVERNOR_MEMORY, m),
          },
        }
      : {}),
  });
}

/** The governor's scale-out cooldown is the shortest `scale.cooldown`, scale-in's the shortest `scale.stabilization`. */
function scaleCooldowns(config: UnderstudyConfig): { 'scale-out'?: number; 'scale-in'?: number } {
  const sites = Object.values(config.sites).filter((s) => s.scale.max > 1);
  if (sites.length === 0) return {};
  return {
    'scale-out': Math.min(...sites.map((s) => s.scale.cooldownMs)),
    'scale-in': Math.min(...sites.map((s) => s.scale.stabilizationMs ?? 30_000)),
  };
}
