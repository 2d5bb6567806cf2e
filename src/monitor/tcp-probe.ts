import net from 'node:net';
import type { ProbeResult } from './http-probe.ts';

/**
 * A TCP probe (`health.probe.type: tcp`): healthy when a connection to the app's
 * port is accepted within the timeout, for apps without a health path. It says
 * less than an HTTP probe: a hung app whose kernel still accepts connections looks
 * healthy to it (the director's errors and the traffic detectors still see it).
 */
export class TcpProbe {
  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs: number,
  ) {}

  get target(): string {
    return `tcp://${this.host}:${this.port}`;
  }

  run(): Promise<ProbeResult> {
    const start = Date.now();
    return new Promise((resolve) => {
      const socket = net.connect({ host: this.host, port: this.port });
      let done = false;
      const finish = (r: Omit<ProbeResult, 'at' | 'latencyMs'>): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve({ ...r, at: start, latencyMs: Date.now() - start });
      };
      const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), this.timeoutMs);
      socket.once('connect', () => finish({ ok: true }));
      socket.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, error: e.code === 'ECONNREFUSED' ? 'refused' : String(e.code ?? e.message) }));
    });
  }

  async close(): Promise<void> {
    // Nothing kept between probes.
  }
}
