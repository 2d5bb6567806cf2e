import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunbookJournal, type RunbookDeps } from '../../../src/controller/runbook-journal.ts';
import { StateStore } from '../../../src/state/state-store.ts';
import { UnderstudyError } from '../../../src/shared/errors.ts';

const log = { info: () => undefined, warn: () => undefined, error: () => undefined };

function depsWith(store: StateStore): RunbookDeps {
  return { store, log } as unknown as RunbookDeps;
}

test('journal before act: a step runs only after its begin is durable; when the store refuses (the term ended), the step does not run', async () => {
  const store = new StateStore({ mirrored: true });
  const durable: string[] = [];
  let refuse = false;
  store.attachMirror({
    onChange: () => undefined,
    flush: async () => {
      if (refuse) throw new UnderstudyError('US_STALE_LEADER', 'etcd refused: another controller leads');
      for (const c of store.pendingChanges(100)) if (c.table === 'journal') durable.push(`${String(c.row!.step)}:${String(c.row!.phase)}`);
      store.changesTaken(store.lastChangeSeq());
    },
  });
  const rb = store.startRunbook('shop', 'failover', {});
  const j = new RunbookJournal(depsWith(store), rb, {});
  const ran: string[] = [];
  await j.step('fence', async () => {
    ran.push(`fence (durable then: ${durable.join(', ')})`);
  });
  assert.deepEqual(ran, ['fence (durable then: fence:begin)'], 'the begin was durable before the step acted');

  refuse = true;
  await assert.rejects(
    j.step('promote', async () => {
      ran.push('promote');
    }),
    (e: Error & { code?: string }) => e.code === 'US_STALE_LEADER',
  );
  assert.equal(ran.length, 1, 'promote never ran');
  assert.deepEqual(
    store.journalOf(rb.id).map((x) => `${x.step}:${x.phase}`),
    ['fence:begin', 'fence:end', 'promote:begin'],
    'no end (nor error) is claimed for a step that did not run',
  );
  store.close();
});
