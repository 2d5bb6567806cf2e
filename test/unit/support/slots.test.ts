import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The loopback slots of the e2e tests are claimed, never named by hand (test/support/slots.ts). */

const SLOTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../support/slots.ts');
const DIR = path.join(os.tmpdir(), 'understudy-slots');

/** A process that claims `n` slots, holds them `holdMs`, and exits; what it claimed. */
function claimIn(n: number, holdMs: number): Promise<{ pid: number; slots: number[] }> {
  const code = `import { claimSlots } from ${JSON.stringify(SLOTS)}; console.log(JSON.stringify({ pid: process.pid, slots: claimSlots(${n}) })); setTimeout(() => {}, ${holdMs});`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (c) => (c === 0 ? resolve(JSON.parse(out.trim()) as { pid: number; slots: number[] }) : reject(new Error(err))));
  });
}

const holder = (slot: number): string | null => {
  try {
    return fs.readFileSync(path.join(DIR, String(slot)), 'utf8');
  } catch {
    return null;
  }
};

test('processes claiming slots at the same time get different ones, and each releases its own at exit', async () => {
  const runs = await Promise.all([0, 1, 2].map(() => claimIn(2, 1500)));
  const all = runs.flatMap((r) => r.slots);
  assert.equal(new Set(all).size, 6, `six different slots: ${all.join(', ')}`);
  for (const s of all) assert.ok(s >= 1 && s <= 89, `${s} in 1–89`);
  for (const r of runs) for (const s of r.slots) assert.notEqual(holder(s), String(r.pid), `slot ${s} released by ${r.pid}`);
});

test('a slot left claimed by a process that is gone is taken over', async () => {
  const gone = await claimIn(1, 0); // its pid names a process that no longer runs
  fs.mkdirSync(DIR, { recursive: true });
  // Every free slot claimed in the gone process's name, as a SIGKILLed test leaves them.
  const made: number[] = [];
  for (let s = 1; s <= 89; s++) {
    try {
      fs.writeFileSync(path.join(DIR, String(s)), String(gone.pid), { flag: 'wx' });
      made.push(s);
    } catch {
      /* claimed by a running test: left alone */
    }
  }
  try {
    assert.ok(made.length > 0);
    const now = await claimIn(1, 0);
    assert.ok(made.includes(now.slots[0]!), `a slot of the gone process was taken over (${now.slots[0]})`);
  } finally {
    for (const s of made) if (holder(s) === String(gone.pid)) fs.rmSync(path.join(DIR, String(s)));
  }
});
