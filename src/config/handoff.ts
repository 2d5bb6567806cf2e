import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { deepFreeze } from './deep-freeze.ts';
import type { UnderstudyConfig } from './types.ts';

/*
 * The compiled config, handed from a process to the parts it starts (`up` to its
 * storage processors, director and controller; the local relay to a host's agent):
 * a part started with it does not parse and validate the file again, which is most
 * of its start-up time (`npm run bench:agent` prints an agent's start both ways), and
 * matters most for a cold standby's agent, booted in the middle of a failover.
 *
 * It travels in one environment variable, as JSON with the sha256 of the file text
 * it was compiled from. The receiver takes it only for the same file, unchanged
 * (the hash of the text it reads now), and otherwise loads the file as usual; a
 * config too large for one variable is not handed off. It holds no secret: the
 * compiled config names where secrets are (a file, a variable), never their values.
 */

export const HANDOFF_ENV = 'UNDERSTUDY_COMPILED_CONFIG';
/** Linux limits one environment string to 128 KiB; a larger config is loaded by the child itself. */
const MAX_HANDOFF_BYTES = 100 * 1024;

const sources = new WeakMap<UnderstudyConfig, string>();

interface Handoff {
  v: 1;
  file: string;
  sha256: string;
  config: UnderstudyConfig;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Records the text a config was compiled from (load-config.ts), so that it can be handed off. */
export function noteSource(config: UnderstudyConfig, text: string): UnderstudyConfig {
  sources.set(config, sha256(text));
  return config;
}

/** The environment entry that hands `config` to a child process; empty when it cannot be handed off. */
export function handoffEnv(config: UnderstudyConfig): Record<string, string> {
  const hash = sources.get(config);
  if (hash === undefined) return {};
  const json = JSON.stringify({ v: 1, file: config.file, sha256: hash, config } satisfies Handoff);
  return Buffer.byteLength(json) <= MAX_HANDOFF_BYTES ? { [HANDOFF_ENV]: json } : {};
}

/**
 * The config handed to this process for `file`, if the file still holds the text it
 * was compiled from; null otherwise (then the caller loads the file).
 */
export function takeHandoff(file: string, env: NodeJS.ProcessEnv = process.env): UnderstudyConfig | null {
  const raw = env[HANDOFF_ENV];
  if (!raw) return null;
  let h: Handoff;
  try {
    h = JSON.parse(raw) as Handoff;
  } catch {
    return null;
  }
  if (h?.v !== 1 || typeof h.config !== 'object' || h.file !== path.resolve(file)) return null;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  if (sha256(text) !== h.sha256) return null;
  return noteSource(deepFreeze(h.config), text);
}
