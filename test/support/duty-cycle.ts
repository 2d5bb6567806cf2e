import { sleep } from './cluster.ts';

/**
 * A real slowdown: the host's whole process group (agent and app) is stopped with
 * SIGSTOP for `stopMs`, then let run with SIGCONT for `runMs`, over and over, until
 * `stop()` — which always leaves the group running (SIGCONT), also when the group is
 * gone. Several groups are stopped and continued together (a shared cause).
 */
export function dutyCycle(pgids: number[], opts: { stopMs: number; runMs: number }) {
  let running = true;
  let cycles = 0;
  const signal = (sig: NodeJS.Signals): void => {
    for (const g of pgids) {
      try {
        process.kill(-g, sig);
      } catch {
        /* gone */
      }
    }
  };
  const loop = (async () => {
    try {
      while (running) {
        signal('SIGSTOP');
        await sleep(opts.stopMs);
        signal('SIGCONT');
        cycles++;
        if (!running) break;
        await sleep(opts.runMs);
      }
    } finally {
      signal('SIGCONT');
    }
  })();
  return {
    get cycles() {
      return cycles;
    },
    stop: async (): Promise<void> => {
      running = false;
      await loop;
      signal('SIGCONT');
    },
  };
}
