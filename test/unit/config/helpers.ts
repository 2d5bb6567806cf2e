import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../src/config/load-config.ts';
import { ConfigError } from '../../../src/config/problems.ts';
import type { ConfigProblem } from '../../../src/config/problems.ts';
import type { UnderstudyConfig } from '../../../src/config/types.ts';

/** A small valid config: two storage systems and a vault, three hosts, one site. */
export const MINIMAL = `storage:
  array-a: { path: data/array-a }
  array-b: { path: data/array-b }
  vault: { path: data/vault, backup: true }
hosts:
  h1: { address: 127.0.1.1, storage: array-a }
  h2: { address: 127.0.2.1, storage: array-b }
  h3: { address: 127.0.3.1, storage: array-b }
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: h1
    standby: [h2]
`;

let dir: string | undefined;

/** Writes `text` to a fresh understudy.yaml in a temp dir; returns its path. */
export function writeYaml(text: string, name = 'understudy.yaml'): string {
  dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-config-'));
  const sub = fs.mkdtempSync(path.join(dir, 'c-'));
  const file = path.join(sub, name);
  fs.writeFileSync(file, text);
  return file;
}

export function load(text: string, baseDir?: string): UnderstudyConfig {
  const file = writeYaml(text);
  return loadConfig(file, { baseDir: baseDir ?? path.dirname(file) });
}

/** The problems of an invalid config (fails the test when it loads). */
export function problemsOf(text: string): ConfigProblem[] {
  const file = writeYaml(text);
  try {
    loadConfig(file, { baseDir: path.dirname(file) });
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  throw new Error(`expected problems, but the config loaded:\n${text}`);
}

/** Problem lines without the temp file name: `line:col: path: message`. */
export function lines(text: string): string[] {
  return problemsOf(text).map((p) => `${p.line}:${p.col}: ${p.path}: ${p.message}`);
}

export function cleanup(): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = undefined;
}
