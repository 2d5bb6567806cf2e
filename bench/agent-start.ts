/**
 * bench/agent-start: how long a host's agent takes from spawn to answering its health
 * check, the part of a cold-standby failover spent booting the target. Two ways:
 * the agent loading the config file itself (a machine that boots on its own), and
 * handed the config its parent compiled (src/config/handoff.ts: what the local relay
 * does). Each the median (min, max) of `--runs` starts, alternating; the machine's
 * `node -e 0` is printed alongside (the floor).
 *
 *   npm run build && node --import tsx bench/agent-start.ts [--runs 10]
 *
 * The agent listens on 127.0.252.1 (examples/demo.yaml's h1 moved there) and is
 * SIGKILLed after each start.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { handoffEnv } from '../src/config/handoff.ts';
import { loadConfig } from '../src/config/load-config.ts';
import { BIN, ROOT } from '../test/support/cluster.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } });
const RUNS = Number(values.runs);
const ADDRESS = '127.0.252.1';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'understudy-bench-agent-'));
const file = path.join(dir, 'understudy.yaml');
fs.writeFileSync(file, fs.readFileSync(path.join(ROOT, 'examples/demo.yaml'), 'utf8').replaceAll('127.0.1.1', ADDRESS).replaceAll('.understudy/', `${dir}/`));
const config = loadConfig(file);
const port = config.hosts.h1!.agentPort;

async function start(env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  const p = spawn(process.execPath, [BIN, 'agent', '--host', 'h1', '-c', file], { cwd: dir, env, stdio: 'ignore' });
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const ok = await fetch(`http://${ADDRESS}:${port}/healthz`, { signal: AbortSignal.timeout(500) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return performance.now() - t0;
      if (Date.now() > deadline) throw new Error(`the agent did not answer within 15 s (exit ${p.exitCode})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    p.kill('SIGKILL');
    await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)));
  }
}

function floor(): number {
  const t0 = performance.now();
  spawnSync(process.execPath, ['-e', '0']);
  return performance.now() - t0;
}

const rows: Record<string, number[]> = { 'node -e 0 (floor)': [], 'agent, config file': [], 'agent, config handed off': [] };
try {
  for (let i = 0; i < RUNS; i++) {
    rows['node -e 0 (floor)']!.push(floor());
    rows['agent, config file']!.push(await start(process.env));
    rows['agent, config handed off']!.push(await start({ ...process.env, ...handoffEnv(config) }));
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

console.log(`bench/agent-start — spawn → /healthz 200, ${RUNS} starts each, node ${process.version}, compiled build`);
console.log('| start                     | median ms |  min |  max |');
console.log('|---------------------------|----------:|-----:|-----:|');
for (const [what, ms] of Object.entries(rows)) {
  const s = [...ms].sort((a, b) => a - b);
  const f = (n: number) => String(Math.round(n)).padStart(4);
  console.log(`| ${what.padEnd(25)} | ${f(s[Math.floor(s.length / 2)]!).padStart(9)} | ${f(s[0]!)} | ${f(s[s.length - 1]!)} |`);
}
