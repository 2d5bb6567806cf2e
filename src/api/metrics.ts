import client from 'prom-client';
import type { Controller } from '../controller/controller.ts';

/**
 * Prometheus metrics of the controller, computed from its state when scraped:
 * nothing here is on a hot path.
 */
export function createMetrics(controller: Controller): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'understudy_controller_' });
  const states = ['starting', 'serving', 'degraded', 'failing-over', 'down'];
  new client.Gauge({
    name: 'understudy_site_state', help: '1 for the state each site is in', labelNames: ['site', 'state'], registers: [registry],
    async collect() {
      const st = await controller.status();
      for (const s of st.sites) for (const state of states) this.set({ site: s.name, state }, s.state === state ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'understudy_site_epoch', help: 'Current epoch of each site', labelNames: ['site'], registers: [registry],
    async collect() {
      for (const s of (await controller.status()).sites) this.set({ site: s.name }, s.epoch);
    },
  });
  new client.Gauge({
    name: 'understudy_replication_lag_ms', help: 'Age of the oldest change not yet on the replica', labelNames: ['site'], registers: [registry],
    async collect() {
      this.reset();
      for (const s of (await controller.status()).sites) if (s.replication.lagMs !== null) this.set({ site: s.name }, s.replication.lagMs);
    },
  });
  new client.Gauge({
    name: 'understudy_host_power', help: '1 when the host is powered on', labelNames: ['host'], registers: [registry],
    async collect() {
      for (const h of (await controller.status()).hosts) this.set({ host: h.name }, h.power === 'on' ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'understudy_runbooks', help: 'Runbooks by kind and status', labelNames: ['kind', 'status'], registers: [registry],
    collect() {
      this.reset();
      for (const r of controller.store.listRunbooks()) this.inc({ kind: r.kind, status: r.status });
    },
  });
  return registry;
}
