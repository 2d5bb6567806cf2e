/**
 * bench/cli: wall time of CLI commands as an operator types them, on the compiled
 * build (`node bin/understudy.js …`, what the installed `understudy` runs):
 * `--help`, `validate -c examples/demo.yaml`, and `status` / `status --json`
 * against the running demo (a real `understudy up` of examples/demo.yaml, its
 * ports, addresses and directories moved into bench slot 50 so that it cannot
 * collide with a demo someone runs), each the median (and min, max) of `--runs`
 * runs, one after the other.
 *
 *   npm run build && node --import tsx bench/cli.ts [--runs 10]
 *
 * Targets: `status` median ≤ 200 ms, `--help` median ≤ 150 ms. The process is
 * timed from spawn to exit, as a shell would; the machine's `node -e 0` is printed
 * alongside (the floor no command can go below).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { BIN, ROOT, ports, slotAddress, startCluster, waitUntil, api, type ConfigDoc } from '../test/support/cluster.ts';
import type { Status } from '../test/support/views.ts';

const SLOT = 50;

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } });
const RUNS = Number(values.runs);

interface Row {
  what: string;
  target: number | null;
  ms: number[];
}

function time(args: string[], env: NodeJS.ProcessEnv = process.env): number[] {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { cwd: ROOT, env, encoding: 'utf8', timeout: 30_000 });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
    out.push(ms);
  }
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const rows: Row[] = [];
rows.push({ what: 'node -e 0 (floor)', target: null, ms: time(['-e', '0']) });
rows.push({ what: 'understudy --help', target: 150, ms: time([BIN, '--help']) });
rows.push({ what: 'understudy validate -c examples/demo.yaml', target: null, ms: time([BIN, 'validate', '-c', path.join(ROOT, 'examples/demo.yaml')]) });

/** examples/demo.yaml, with every address, port and directory moved into the bench's slot. */
function demoInSlot(dir: string): string {
  const p = ports(SLOT);
  let text = fs.readFileSync(path.join(ROOT, 'examples/demo.yaml'), 'utf8');
  const swap = (from: string, to: string) => {
    if (!text.includes(from)) throw new Error(`examples/demo.yaml no longer has ${from}: update bench/cli.ts`);
    text = text.split(from).join(to);
  };
  swap('127.0.0.1:7070', `127.0.0.1:${p.controller}`);
  swap('127.0.0.1:7071', `127.0.0.1:${p.director}`);
  swap('127.0.0.1:8080', `127.0.0.1:${p.front}`);
  swap('127.0.0.1:8081', `127.0.0.1:${p.front + 1}`);
  for (let i = 1; i <= 4; i++) swap(`127.0.${i}.1`, slotAddress(SLOT, i - 1));
  swap('.understudy/state', `${dir}/state`);
  swap('{ path: .understudy/array-a }', `{ path: ${dir}/array-a, listen: 127.0.0.1:${p.storageA} }`);
  swap('{ path: .understudy/array-b }', `{ path: ${dir}/array-b, listen: 127.0.0.1:${p.storageB} }`);
  swap('{ path: .understudy/vault,', `{ path: ${dir}/vault, listen: 127.0.0.1:${p.vault},`);
  // The app and its seed stay where the demo has them (relative paths resolve against the config's directory).
  text = text.split('shop/server.js').join(path.join(ROOT, 'examples/shop/server.js'));
  text = text.split('seed: shop/seed').join(`seed: ${path.join(ROOT, 'examples/shop/seed')}`);
  return text;
}

const cluster = await startCluster({ slot: SLOT, config: ({ dir }) => parseYaml(demoInSlot(dir)) as ConfigDoc });
try {
  await waitUntil(
    'both demo sites serving',
    async () => {
      const st = await api<Status>(cluster, '/v1/status');
      return st.sites.length === 2 && st.sites.every((s) => s.state === 'serving');
    },
    60_000,
    100,
  );
  // The config names the API (controller.listen), as it does for an operator: no --api.
  const { UNDERSTUDY_API: _api, ...env } = process.env;
  rows.push({ what: 'understudy status -c FILE', target: 200, ms: time([BIN, 'status', '-c', cluster.configFile], env) });
  rows.push({ what: 'understudy status --json -c FILE', target: 200, ms: time([BIN, 'status', '--json', '-c', cluster.configFile], env) });
  rows.push({ what: 'understudy status --api URL', target: null, ms: time([BIN, 'status', '--api', cluster.api], env) });
} finally {
  await cluster.stop();
}

console.log(`\nbench/cli — wall time from spawn to exit, ${RUNS} runs each, node ${process.version}, compiled build (bin/understudy.js → dist/)`);
console.log('| command                                   | median ms |  min |  max | target   |');
console.log('|-------------------------------------------|----------:|-----:|-----:|----------|');
let missed = 0;
for (const r of rows) {
  const m = median(r.ms);
  const verdict = r.target === null ? '' : `≤ ${r.target} ${m <= r.target ? 'met' : 'MISSED'}`;
  if (r.target !== null && m > r.target) missed++;
  console.log(
    `| ${r.what.padEnd(41)} | ${m.toFixed(0).padStart(9)} | ${Math.min(...r.ms)
      .toFixed(0)
      .padStart(4)} | ${Math.max(...r.ms)
      .toFixed(0)
      .padStart(4)} | ${verdict.padEnd(8)} |`,
  );
}
process.exitCode = missed > 0 ? 1 : 0;
