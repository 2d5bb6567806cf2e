import type { UnderstudyConfig } from '../config/types.ts';
import type { RelayDriver } from '../power/relay.ts';
import type { RunbookRecord, StateStore } from '../state/state-store.ts';
import type { PartClients } from './clients.ts';
import type { ActionGovernor } from './action-governor.ts';
import { sleep } from './timing.ts';

export interface RunbookDeps {
  config: UnderstudyConfig;
  store: StateStore;
  relay: RelayDriver;
  clients: PartClients;
  /** Host trust (ActionGovernor): target choice skips hosts that failed and are not trusted again. Absent: every host is trusted. */
  governor?: Pick<ActionGovernor, 'trust'>;
  log: { info: (o: object, msg: string) => void; warn: (o: object, msg: string) => void; error: (o: object, msg: string) => void };
  /** True once the controller stops: a runbook that waits (for a spare) gives up then and stays `running`, to be resumed. */
  stopping?: () => boolean;
  /** The readers (read-only hosts) of every site; a failover may take one back (spare-pool.ts). */
  readers?: () => { site: string; host: string }[];
  /**
   * Takes a reader back: stops `site`'s read-only app on `host` and drops it from the
   * site's route. Required wherever `readers` lists any; a failover calls it before
   * it starts another site on that host.
   */
  reclaimReader?: (site: string, host: string) => Promise<void>;
}

/**
 * Runs a runbook's steps with the journal: each step is journaled `begin` before
 * and `end` (or `error`) after it runs, and the runbook's data (its decisions) is
 * saved with the `end`. Steps whose `end` is already journaled are skipped, so a
 * restarted controller that runs the same runbook again resumes at the step it
 * stopped in. Steps must therefore be idempotent: safe to run twice. A step runs only
 * once its `begin` is durable (`store.flush()`: at once for the embedded store, once
 * etcd has it for the state in etcd).
 */
export class RunbookJournal<D extends Record<string, unknown>> {
  private readonly done: Set<string>;

  constructor(
    private readonly deps: RunbookDeps,
    readonly rb: RunbookRecord,
    readonly data: D,
  ) {
    this.done = new Set(
      deps.store
        .journalOf(rb.id)
        .filter((j) => j.phase === 'end')
        .map((j) => j.step),
    );
  }

  async step(name: string, fn: () => Promise<unknown>): Promise<void> {
    const { store } = this.deps;
    if (this.done.has(name)) return;
    store.journal(this.rb.id, name, 'begin');
    // Journal before act: with the state in etcd, the begin (and all before it) is committed there before the step runs.
    await store.flush();
    const started = Date.now();
    let result: unknown;
    try {
      result = await fn();
    } catch (e) {
      store.journal(this.rb.id, name, 'error', { error: (e as Error).message });
      throw e;
    }
    store.updateRunbookData(this.rb.id, this.data);
    store.journal(this.rb.id, name, 'end', { ms: Date.now() - started, ...(result && typeof result === 'object' ? result : {}) });
    this.done.add(name);
    this.deps.log.info({ site: this.rb.site, runbook: this.rb.id, kind: this.rb.kind, step: name, ms: Date.now() - started }, 'runbook step done');
    await pauseForFaultInjection(name);
  }
}

/**
 * Test hook: UNDERSTUDY_FAULT_PAUSE_AFTER_STEP=fence:3000 makes the controller wait
 * 3 s after journaling the end of step `fence`, so that a test can SIGKILL it for
 * real at that point. Unset in production; it changes no decision.
 */
async function pauseForFaultInjection(step: string): Promise<void> {
  const spec = process.env.UNDERSTUDY_FAULT_PAUSE_AFTER_STEP;
  if (!spec) return;
  const [name, ms] = spec.split(':');
  if (name === step) await sleep(Number(ms ?? 3000));
}
