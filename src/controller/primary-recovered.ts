import type { Detection } from '../monitor/detection.ts';
import type { MalfunctionWatch } from '../monitor/malfunction-watch.ts';
import type { SiteMonitor } from '../monitor/site-monitor.ts';

/**
 * Whether a primary whose failover was deferred has recovered from what was
 * detected, judged by the same kind of evidence that raised it (the watches are
 * the fresh ones the reconcile loop started after the detection):
 *
 * - a traffic malfunction: a full window of real traffic since, with at least the
 *   minimum requests and an error rate below the threshold;
 * - anything probes found (crash, hang, wrong answers): the site monitor says
 *   healthy (`rise` good probes in a row).
 *
 * Returns why it recovered, or null (not known to have recovered: fail over).
 */
export function primaryRecovered(d: Detection, monitor: SiteMonitor | undefined, watch: MalfunctionWatch | undefined, host: string): string | null {
  if (d.source === 'traffic') {
    if (watch?.target.host !== host) return null;
    const w = watch.window();
    if (!w || w.rate === null || w.base < w.minRequests || w.rate >= w.threshold) return null;
    return `the error rate of ${host}'s traffic is down to ${Math.round(w.rate * 1000) / 10} % over the last ${w.windowMs} ms window (${w.errors} of ${w.base})`;
  }
  if (monitor?.target.host !== host || !monitor.healthy) return null;
  return `${host} answers its probes again`;
}
