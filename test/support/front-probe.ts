import http from 'node:http';

/**
 * How long after `since` a front answered again (status 200, and from a server whose
 * `x-served-by` starts with `servedBy` when given): a new connection every 25 ms, each
 * given 150 ms to connect, so that an attempt that falls into the moment an address
 * moves is not left waiting for the kernel's 1 s SYN retransmission. Rejects after
 * `withinMs`.
 */
export async function frontBack(url: string, since: number, opts: { withinMs?: number; servedBy?: string } = {}): Promise<number> {
  const withinMs = opts.withinMs ?? 10_000;
  for (let n = 0; n < 100_000 && Date.now() - since < withinMs; n++) {
    const r = await getOnce(url, 150, 1000);
    if (r?.status === 200 && (opts.servedBy === undefined || r.servedBy?.startsWith(opts.servedBy))) return Date.now() - since;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`${url} did not answer${opts.servedBy ? ` from ${opts.servedBy}` : ''} within ${withinMs} ms`);
}

/** One GET on a new connection: its status and x-served-by, or null when it could not connect within `connectMs` or answer within `answerMs`. */
export function getOnce(url: string, connectMs: number, answerMs: number): Promise<{ status: number; servedBy: string | null } | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => {
        clearTimeout(timer);
        const sb = res.headers['x-served-by'];
        resolve({ status: res.statusCode ?? 0, servedBy: typeof sb === 'string' ? sb : null });
      });
    });
    let timer = setTimeout(() => req.destroy(), connectMs);
    req.on('socket', (socket) =>
      socket.once('connect', () => {
        clearTimeout(timer);
        timer = setTimeout(() => req.destroy(), answerMs);
      }),
    );
    req.on('error', () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
}
