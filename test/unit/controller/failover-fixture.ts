import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PartClients } from '../../../src/controller/clients.ts';
import { FailoverRunbook } from '../../../src/controller/failover-runbook.ts';
import type { RunbookDeps } from '../../../src/controller/runbook-journal.ts';
import type { RelayDriver } from '../../../src/power/relay.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { cleanup, load } from '../config/helpers.ts';
import { after } from 'node:test';

// The configs this fixture writes go when the test file is done.
after(cleanup);

/**
 * A failover runbook over a real state store and journal, with stand-ins for the parts
 * that record every call. The runbook is started past choose-target (journaled: h1 on
 * array-a fails, h2 on array-b is the target, epoch 2), and the stand-in agent refuses
 * to start the app, so that a run stops right after the storage-side steps.
 */
export interface FailoverHarnessOptions {
  /** The site has restore points in the vault. */
  backup?: boolean;
  /** The replica's answer to the promotion (default: US_REPLICA_CORRUPT). */
  promote?: 'ok' | 'corrupt';
  /** The old storage's answer to the drain's confirm (default: confirmed). */
  confirm?: () => Promise<unknown>;
  /** The failover's evidence (default: none). */
  evidence?: Record<string, unknown>;
  /** `controller.failover` in YAML, e.g. `{ drainTimeout: 0s }`. */
  failover?: string;
  /** The target (h2) is powered off when the run starts. */
  targetOff?: boolean;
}

const CONFIG = (backup: boolean, failover?: string) => `${failover ? `controller: { failover: ${failover} }\n` : ''}storage:
  array-a: { path: data/array-a }
  array-b: { path: data/array-b }
  vault: { path: data/vault, backup: true }
hosts:
  h1: { address: 127.0.1.1, storage: array-a }
  h2: { address: 127.0.2.1, storage: array-b }
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: h1
    standby: [h2]
${backup ? '    volume: { backup: { to: vault, every: 1s, keep: 5 } }\n' : ''}`;

export const STOP = new UnderstudyError('US_UNREACHABLE', 'test: the agent is not there');

export function failoverHarness(opts: FailoverHarnessOptions = {}) {
  const backup = opts.backup ?? false;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'us-refuse-'));
  const store = new StateStore(dir);
  const calls: string[] = [];
  const off = new Set(opts.targetOff ? ['h2'] : []);
  const relay: RelayDriver = {
    status: (host) => (off.has(host) ? { host, power: 'off', pid: null } : { host, power: 'on', pid: 1 }),
    on: (host) => {
      calls.push(`on ${host}`);
      off.delete(host);
      return Promise.resolve({ host, power: 'on', pid: 1 });
    },
    off: (host) => Promise.resolve({ host, power: 'off', pid: null }),
  };
  const clients = {
    storageUrl: (s: string) => `http://${s}`,
    demote: (s: string, _site: string, epoch: number) => {
      calls.push(`demote ${s} ${epoch}`);
      return Promise.resolve({});
    },
    confirm: (s: string, _site: string, timeoutMs: number) => {
      calls.push(`confirm ${s} ${timeoutMs}`);
      return opts.confirm ? opts.confirm() : Promise.resolve({ position: {} });
    },
    promote: (s: string, site: string, epoch: number) => {
      calls.push(`promote ${s} ${epoch}`);
      if (opts.promote === 'ok') return Promise.resolve({ lastAppliedAt: null });
      return Promise.reject(
        new UnderstudyError(
          'US_REPLICA_CORRUPT',
          `the copy of ${site} on storage ${s} failed verification before promotion (orders.db: quick-check (page 3 is never used))`,
          { verification: { problems: [{ file: 'orders.db', kind: 'quick-check', detail: 'page 3 is never used' }] } },
        ),
      );
    },
    restore: (s: string, _site: string, body: { epoch: number; point: string; vaultUrl: string }) => {
      calls.push(`restore ${s} ${body.epoch} ${body.point} ${body.vaultUrl}`);
      return Promise.resolve({ point: '2026-11-25T07-00-00.000Z', takenAt: 1_000, bytes: 10, ms: 5, skipped: [] });
    },
    transform: () => Promise.resolve({ changes: [] }),
    agentStatus: (host: string) => Promise.resolve({ host, pid: 1, pgid: 1, sites: [] }),
    startApp: () => Promise.reject(STOP),
    putRoute: () => Promise.resolve({}),
  } as unknown as PartClients;
  const deps = {
    config: load(CONFIG(backup, opts.failover)),
    store,
    relay,
    clients,
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    stopping: () => false,
  } as RunbookDeps;
  store.putSite({ site: 'shop', epoch: 1, primaryHost: 'h1', state: 'serving', replicaStorage: 'array-b' });
  const rb = store.startRunbook('shop', 'failover', {
    oldPrimary: 'h1',
    oldEpoch: 1,
    reason: 'crash',
    evidence: opts.evidence ?? {},
    detectedAt: 5_000,
    lastHealthyAt: 4_900,
    target: 'h2',
    newEpoch: 2,
  });
  for (const s of ['hold', 'fence', 'choose-target']) {
    store.journal(rb.id, s, 'begin');
    store.journal(rb.id, s, 'end');
  }
  return {
    deps,
    store,
    calls,
    rb,
    run: async () =>
      new FailoverRunbook(
        deps,
        store.listRunbooks('shop').find((r) => r.id === rb.id)!,
      )
        .run()
        .catch((e: Error) => e),
    steps: () => store.journalOf(rb.id).map((j) => `${j.step}:${j.phase}`),
    kinds: () => store.listEvents({ site: 'shop' }).map((e) => e.kind),
    close: () => {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
