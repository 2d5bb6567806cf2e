import type { RunbookRecord } from '../state/state-store.ts';
import type { UnderstudyError } from '../shared/errors.ts';
import { RunbookJournal, type RunbookDeps } from './runbook-journal.ts';

/**
 * What every runbook (failover, switchover, restore, scale-out, scale-in) is: a
 * record in the state store, a journal of its steps over that record's data, and a
 * `run()` that a new controller may call again on the same record — steps the
 * journal shows ended are skipped, so it resumes where the last one stopped.
 */
export abstract class JournaledRunbook<D extends Record<string, unknown>, Deps extends RunbookDeps = RunbookDeps> {
  protected readonly journal: RunbookJournal<D>;

  constructor(
    protected readonly deps: Deps,
    protected readonly rb: RunbookRecord,
  ) {
    this.journal = new RunbookJournal(deps, rb, rb.data as D);
  }

  get id(): number {
    return this.rb.id;
  }

  /** The runbook's data, as its journaled steps have filled it in so far. */
  get data(): D {
    return this.journal.data;
  }

  abstract run(): Promise<void>;

  /**
   * The `hold` step's work: new requests wait in the director instead of failing while
   * the site moves. A newer epoch already there means a later step ran: nothing to hold.
   */
  protected async holdRequests(site: string, epoch: number): Promise<void> {
    await this.deps.clients.putRoute({ site, epoch, primary: null, readers: [] }).catch((e: UnderstudyError) => {
      if (e.code !== 'US_STALE_EPOCH') throw e;
    });
  }
}
