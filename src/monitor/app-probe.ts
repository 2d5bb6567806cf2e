import type { ProbeConfig } from '../config/types.ts';
import { HttpProbe, type ProbeResult } from './http-probe.ts';
import { TcpProbe } from './tcp-probe.ts';

/** A health probe of one app instance: HttpProbe or TcpProbe, by `health.probe.type`. */
export interface AppProbe {
  /** What is probed (`http://127.0.1.1:3000/healthz`, `tcp://127.0.1.1:3000`), for messages. */
  readonly target: string;
  run(): Promise<ProbeResult>;
  close(): Promise<void>;
}

/** The probe's target for an app listening on `address:port`: a URL for an HTTP probe, `tcp://address:port` for a TCP one. */
export function probeTarget(address: string, port: number, cfg: Pick<ProbeConfig, 'type' | 'path'>): string {
  return cfg.type === 'tcp' ? `tcp://${address}:${port}` : `http://${address}:${port}${cfg.path}`;
}

/** Makes the probe for a target built by `probeTarget`. */
export function createProbe(target: string, cfg: Pick<ProbeConfig, 'expect' | 'timeoutMs'>, timeoutMs = cfg.timeoutMs): AppProbe {
  if (target.startsWith('tcp://')) {
    const u = new URL(target);
    return new TcpProbe(u.hostname.replace(/^\[|\]$/g, ''), Number(u.port), timeoutMs);
  }
  return new HttpProbe(target, timeoutMs, cfg.expect);
}
