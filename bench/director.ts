/**
 * What the built-in director costs: GET requests/s and p50/p99 latency through
 * the director versus straight to the upstream, on loopback.
 *
 *   node --import tsx bench/director.ts [--seconds 5] [--concurrency 32]
 *
 * The upstream (a node:http app answering a small JSON body with X-Served-By)
 * and the director each run in their own process, as in production, so that
 * the load generator (undici, keep-alive) does not share their event loop.
 * Bounded: a 1 s warm-up and `--seconds` of measurement per target.
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const self = fileURLToPath(import.meta.url);
const role = process.argv[2];

if (role === '--upstream') {
  const body = JSON.stringify({ id: 1, name: 'Teapot', price: 1999 });
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-served-by': '127.0.0.1' });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
} else if (role === '--director') {
  const upstream = process.argv[3]!;
  const { Director } = await import('../src/director/director.ts');
  const { silentLogger } = await import('../src/director/logger.ts');
  const probe = { path: '/healthz', everyMs: 200, timeoutMs: 500, fall: 2, rise: 2 };
  const director = new Director({
    logger: silentLogger,
    config: {
      file: '',
      baseDir: process.cwd(),
      controller: { listen: { host: '127.0.0.1', port: 0 }, stateDir: '', failover: { cooldownMs: 0, flapWindowMs: 0, flapBackoffMs: 0, drainTimeoutMs: 0 } },
      director: { listen: { host: '127.0.0.1', port: 0 }, holdMaxRequests: 1000, holdTimeoutMs: 5000 },
      storage: {},
      hosts: {},
      pools: {},
      sites: {
        shop: {
          name: 'shop',
          front: { host: '127.0.0.1', port: 0 },
          app: { command: ['true'], port: 0, env: {} },
          primary: 'h1',
          standby: [],
          priority: 0,
          volume: { replication: 'sync', readonly: [] },
          transform: [],
          health: { probe, malfunction: { errorRate: 0.2, windowMs: 5000 }, performance: { p95Ms: 300, windowMs: 10_000 } },
          scale: { max: 1, cooldownMs: 30_000 },
        },
      },
    },
  });
  await director.start();
  director.routes.set({ site: 'shop', epoch: 1, primary: upstream, readers: [] });
  process.on('SIGINT', () => process.exit(0)); // lets --cpu-prof write its profile
  process.send!({ front: director.frontUrl('shop') });
} else {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '32' } } });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const children: ChildProcess[] = [];
  try {
    const up = await start<{ port: number }>(children, ['--upstream']);
    const upstream = `127.0.0.1:${up.port}`;
    const dir = await start<{ front: string }>(children, ['--director', upstream]);
    const rows = [
      { target: 'direct to upstream', ...(await load(`http://${upstream}`, seconds, concurrency)) },
      { target: 'through director', ...(await load(dir.front, seconds, concurrency)) },
    ];
    console.log(`GET /api/products/1, ${concurrency} concurrent, ${seconds} s each, loopback, node ${process.version}`);
    console.log('| target             |   req/s | p50 ms | p99 ms | errors |');
    console.log('|--------------------|--------:|-------:|-------:|-------:|');
    for (const r of rows) {
      console.log(
        `| ${r.target.padEnd(18)} | ${r.rps.toFixed(0).padStart(7)} | ${r.p50.toFixed(2).padStart(6)} | ${r.p99.toFixed(2).padStart(6)} | ${String(r.errors).padStart(6)} |`,
      );
    }
  } finally {
    for (const c of children) c.kill(process.env.BENCH_PROF ? 'SIGINT' : 'SIGKILL');
  }
}

function start<T>(children: ChildProcess[], args: string[]): Promise<T> {
  const prof = args[0] === '--director' && process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROF] : [];
  const child = fork(self, args, { execArgv: ['--import', 'tsx', ...prof], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as T));
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

async function load(origin: string, seconds: number, concurrency: number): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1 });
  const run = async (ms: number, record: boolean) => {
    const lat: number[] = [];
    let errors = 0;
    const until = performance.now() + ms;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          const t0 = performance.now();
          try {
            const res = await pool.request({ path: '/api/products/1', method: 'GET' });
            await res.body.dump();
            if (res.statusCode !== 200) errors++;
          } catch {
            errors++;
          }
          if (record) lat.push(performance.now() - t0);
        }
      }),
    );
    return { lat, errors };
  };
  await run(1000, false);
  const { lat, errors } = await run(seconds * 1000, true);
  await pool.close();
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return { rps: lat.length / seconds, p50: q(0.5), p99: q(0.99), errors };
}
