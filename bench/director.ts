/**
 * What the built-in director costs, beside HAProxy: GET requests/s and p50/p99
 * latency straight to the upstream, through HAProxy (one thread) and through the
 * director, on loopback, in one run.
 *
 *   npm run bench:director -- [--seconds 5] [--concurrency 32] [--load wrk|undici]
 *
 * Needs Debian's `haproxy` and `wrk` (apt-get install haproxy wrk); without HAProxy
 * its row is left out and says so, without wrk the load comes from undici in Node.
 * The upstream (a node:http app answering a small JSON body with X-Served-By), HAProxy
 * and the director (the compiled build, dist/) each run in their own process, as in
 * production. A fourth row, the bare Node proxy (node:http + an undici Pool and nothing
 * else), is the floor any proxy written on them has on this machine. Bounded: a 1 s warm-up and `--seconds` of measurement per target.
 *
 * `--floors` adds two rows that are not products, to show what Node can do outside
 * node:http and undici: a TCP relay (each client connection piped to one upstream
 * connection; no HTTP at all) and a raw HTTP proxy (plain sockets both sides, Node's own
 * llhttp parser reached through the internal `_http_common` module, a pool of upstream
 * connections, GET without body only, none of the director's work).
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { freePort } from '../test/support/free-port.ts';

const self = fileURLToPath(import.meta.url);
const role = process.argv[2];

if (role === '--upstream') {
  const body = JSON.stringify({ id: 1, name: 'Teapot', price: 1999 });
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-served-by': '127.0.0.1' });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
} else if (role === '--bare') {
  // The floor of a Node proxy: node:http in front, an undici Pool behind, nothing else
  // (no hold, retry, sync barrier, header rewriting or statistics). The director cannot be
  // faster than this; the row says how much of the gap to HAProxy is Node's own.
  const { Pool } = await import('undici');
  const pool = new Pool(`http://${process.argv[3]!}`, { connections: 256, pipelining: 1 });
  const server = http.createServer((req, res) => {
    pool.dispatch(
      { path: req.url ?? '/', method: 'GET', headers: req.rawHeaders },
      {
        onRequestStart() {},
        onResponseStart(_c, status, headers) {
          res.writeHead(status, headers);
        },
        onResponseData(_c, chunk) {
          res.write(chunk);
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError(_c, err) {
          res.destroy(err);
        },
      },
    );
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1', () => process.send!({ front: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
} else if (role === '--tcp') {
  // Floor without HTTP: one upstream connection per client connection, bytes piped both ways.
  const [host, port] = process.argv[3]!.split(':') as [string, string];
  const server = net.createServer((c) => {
    const u = net.connect(Number(port), host);
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  server.listen(0, '127.0.0.1', () => process.send!({ front: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
} else if (role === '--raw') {
  runRawProxy(process.argv[3]!);
} else if (role === '--director') {
  const upstream = process.argv[3]!;
  // The compiled build, as `understudy director` runs it (npm run bench:director builds it first).
  const { Director } = (await import(new URL('../dist/director/director.js', import.meta.url).href)) as typeof import('../src/director/director.ts');
  const { silentLogger } = (await import(new URL('../dist/director/logger.js', import.meta.url).href)) as typeof import('../src/director/logger.ts');
  const probe = { path: '/healthz', everyMs: 200, timeoutMs: 500, fall: 2, rise: 2 };
  const director = new Director({
    logger: silentLogger,
    config: {
      file: '',
      baseDir: process.cwd(),
      controller: {
        listen: { host: '127.0.0.1', port: 0 },
        stateDir: '',
        etcd: null,
        members: {},
        eventsKeep: 20_000,
        failover: { cooldownMs: 0, flapWindowMs: 0, flapBackoffMs: 0, drainTimeoutMs: 0 },
      },
      director: { listen: { host: '127.0.0.1', port: 0 }, members: {}, holdMaxRequests: 1000, holdTimeoutMs: 5000 },
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
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      concurrency: { type: 'string', default: '32' },
      load: { type: 'string' },
      floors: { type: 'boolean', default: false },
    },
  });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const useWrk = values.load ? values.load === 'wrk' : has('wrk');
  const children: ChildProcess[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'us-bench-director-'));
  try {
    const up = await start<{ port: number }>(children, ['--upstream']);
    const upstream = `127.0.0.1:${up.port}`;
    const dir = await start<{ front: string }>(children, ['--director', upstream]);
    const bare = await start<{ front: string }>(children, ['--bare', upstream]);
    const haproxy = has('haproxy') ? await startHaproxy(children, tmp, upstream) : null;
    const measure = (url: string) => (useWrk ? wrk(url, seconds, concurrency) : load(url, seconds, concurrency));
    const rows = [{ target: 'direct to upstream', ...(await measure(`http://${upstream}`)) }];
    if (haproxy) rows.push({ target: 'HAProxy, nbthread 1', ...(await measure(haproxy)) });
    const floor = { target: 'bare Node proxy', ...(await measure(bare.front)) };
    rows.push(floor);
    if (values.floors) {
      const tcp = await start<{ front: string }>(children, ['--tcp', upstream]);
      const raw = await start<{ front: string }>(children, ['--raw', upstream]);
      rows.push({ target: 'TCP relay (no HTTP)', ...(await measure(tcp.front)) });
      rows.push({ target: 'raw HTTP proxy', ...(await measure(raw.front)) });
    }
    rows.push({ target: 'built-in director', ...(await measure(dir.front)) });
    const ha = rows.find((r) => r.target.startsWith('HAProxy'));
    const own = rows.at(-1)!;
    console.log(
      `GET /api/products/1, ${concurrency} connections, ${seconds} s each, loopback, load from ${useWrk ? 'wrk -t1' : 'undici'}, node ${process.version}, ${os.cpus().length} cores`,
    );
    console.log('| target              |   req/s | p50 ms | p99 ms | errors |');
    console.log('|---------------------|--------:|-------:|-------:|-------:|');
    for (const r of rows) {
      console.log(
        `| ${r.target.padEnd(19)} | ${r.rps.toFixed(0).padStart(7)} | ${r.p50.toFixed(2).padStart(6)} | ${r.p99.toFixed(2).padStart(6)} | ${String(r.errors).padStart(6)} |`,
      );
    }
    if (ha) {
      console.log(`director / HAProxy: requests/s ${(own.rps / ha.rps).toFixed(2)} × (target ≥ 0.70), p99 ${(own.p99 / ha.p99).toFixed(2)} × (target ≤ 1.50)`);
      console.log(`bare Node proxy / HAProxy: requests/s ${(floor.rps / ha.rps).toFixed(2)} ×, p99 ${(floor.p99 / ha.p99).toFixed(2)} ×`);
      for (const r of rows.filter((x) => x.target.startsWith('TCP') || x.target.startsWith('raw'))) {
        console.log(`${r.target} / HAProxy: requests/s ${(r.rps / ha.rps).toFixed(2)} ×, p99 ${(r.p99 / ha.p99).toFixed(2)} ×`);
      }
    } else console.log('HAProxy is not installed (apt-get install haproxy): no comparison');
    console.log(`director / bare Node proxy: requests/s ${(own.rps / floor.rps).toFixed(2)} ×, p99 ${(own.p99 / floor.p99).toFixed(2)} ×`);
  } finally {
    for (const c of children) c.kill(process.env.BENCH_PROF ? 'SIGINT' : 'SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The raw HTTP proxy of `--floors` (see the header): what is left of a Node proxy's cost
 * without node:http's request and response objects and undici. Not a product path: it
 * answers GET without body only, and needs Node's internal parser binding.
 */
function runRawProxy(upstream: string): void {
  const require = createRequire(import.meta.url);
  const { HTTPParser, methods } = require('_http_common') as {
    HTTPParser: (new () => RawParser) & Record<'REQUEST' | 'RESPONSE' | 'kOnHeaders' | 'kOnHeadersComplete' | 'kOnBody' | 'kOnMessageComplete', number>;
    methods: string[];
  };
  const [host, port] = upstream.split(':') as [string, string];
  type Upstream = net.Socket & { client: net.Socket | null };
  const idle: Upstream[] = [];
  const parser = (kind: number, onHead: (...a: unknown[]) => void, onBody: (b: Buffer) => void, onDone: () => void): RawParser => {
    const p = new HTTPParser();
    p.initialize(kind, {}, 0, 0);
    p[HTTPParser.kOnHeaders] = () => undefined;
    p[HTTPParser.kOnHeadersComplete] = (...a: unknown[]) => {
      onHead(...a);
      return 0;
    };
    p[HTTPParser.kOnBody] = onBody;
    p[HTTPParser.kOnMessageComplete] = onDone;
    return p;
  };
  const connectUpstream = (): Upstream => {
    const u = net.connect(Number(port), host) as Upstream;
    u.setNoDelay(true);
    u.client = null;
    const p = parser(
      HTTPParser.RESPONSE,
      (_maj, _min, headers, _m, _url, status, message) => {
        const h = headers as string[];
        let head = `HTTP/1.1 ${status as number} ${message as string}\r\n`;
        for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
        u.client!.cork();
        u.client!.write(`${head}\r\n`);
      },
      (b) => u.client!.write(b),
      () => {
        const c = u.client!;
        u.client = null;
        idle.push(u);
        c.uncork();
      },
    );
    u.on('data', (d: Buffer) => p.execute(d));
    u.on('error', () => undefined);
    return u;
  };
  const server = net.createServer((c) => {
    c.setNoDelay(true);
    const p = parser(
      HTTPParser.REQUEST,
      (_maj, _min, headers, method, url) => {
        const h = headers as string[];
        let head = `${methods[method as number]} ${url as string} HTTP/1.1\r\n`;
        for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
        const u = idle.pop() ?? connectUpstream();
        u.client = c;
        u.write(`${head}x-forwarded-for: ${c.remoteAddress}\r\n\r\n`);
      },
      () => undefined,
      () => undefined,
    );
    c.on('data', (d: Buffer) => p.execute(d));
    c.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1', () => process.send!({ front: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
}

interface RawParser {
  initialize(kind: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): unknown;
  [k: number]: unknown;
}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** HAProxy in front of the same upstream, one thread, keep-alive both sides; resolves with its front URL once it accepts connections. */
async function startHaproxy(children: ChildProcess[], dir: string, upstream: string): Promise<string> {
  const port = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    [
      'global',
      '  nbthread 1',
      '  maxconn 4096',
      'defaults',
      '  mode http',
      '  option http-keep-alive',
      '  timeout connect 2s',
      '  timeout client 30s',
      '  timeout server 30s',
      'frontend fe',
      `  bind 127.0.0.1:${port}`,
      '  default_backend be',
      'backend be',
      `  server up ${upstream}`,
      '',
    ].join('\n'),
  );
  const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const until = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return `http://127.0.0.1:${port}`;
    if (Date.now() > until || child.exitCode !== null) throw new Error('haproxy did not start (see its output above)');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** wrk's figures for one target (one thread, `concurrency` connections), after a 1 s warm-up. */
function wrk(origin: string, seconds: number, concurrency: number): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const url = `${origin}/api/products/1`;
  const run = (s: number) =>
    new Promise<string>((resolve, reject) => {
      const c = spawn('wrk', ['-t1', `-c${concurrency}`, `-d${s}s`, '--latency', url], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited with ${code}: ${out}`))));
    });
  const ms = (v: string) => {
    const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
    if (!m) return NaN;
    return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
  };
  return run(1).then(async () => {
    const out = await run(seconds);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
    const p50 = ms(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '');
    const p99 = ms(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '');
    const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const errors = non2xx + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
    return { rps, p50, p99, errors };
  });
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
