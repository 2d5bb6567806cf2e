import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { HANDOFF_ENV, handoffEnv, takeHandoff } from '../../../src/config/handoff.ts';
import { loadConfig } from '../../../src/config/load-config.ts';
import { MINIMAL, cleanup, writeYaml } from './helpers.ts';

after(cleanup);

/** A part started by another takes the config its parent compiled, for the same file unchanged only (src/config/handoff.ts). */

test('a handed-off config is the compiled one, frozen, for the same file as it is', () => {
  const file = writeYaml(MINIMAL, 'handoff.yaml');
  const compiled = loadConfig(file);
  const env = handoffEnv(compiled);
  assert.ok(env[HANDOFF_ENV], 'handed off');
  const taken = takeHandoff(file, env);
  assert.ok(taken);
  assert.deepEqual(taken, compiled);
  assert.ok(Object.isFrozen(taken) && Object.isFrozen(taken.hosts), 'frozen like a loaded config');
  // What the receiver took can be handed on (a controller's relay to an agent).
  assert.ok(handoffEnv(taken)[HANDOFF_ENV]);
});

test('not taken for another file, for the file changed since, or from a damaged variable', () => {
  const file = writeYaml(MINIMAL, 'handoff-a.yaml');
  const other = writeYaml(MINIMAL, 'handoff-b.yaml');
  const env = handoffEnv(loadConfig(file));
  assert.equal(takeHandoff(other, env), null, 'another file');
  fs.appendFileSync(file, '\n# edited\n');
  assert.equal(takeHandoff(file, env), null, 'changed since');
  assert.equal(takeHandoff(file, { [HANDOFF_ENV]: '{not json' }), null);
  assert.equal(takeHandoff(file, {}), null);
});

test('a config only built in memory (never loaded from a file) is not handed off', () => {
  const compiled = loadConfig(writeYaml(MINIMAL, 'handoff-c.yaml'));
  assert.deepEqual(handoffEnv(structuredClone(compiled)), {});
});

test('a part started with it runs on the handed-off config, not on its own reading of the file', async () => {
  const file = writeYaml(MINIMAL.replace('127.0.1.1', '127.0.251.1'), 'handoff-d.yaml');
  const compiled = loadConfig(file);
  // The handed-off config differs from the file's (h1's agent port): the port the agent listens on shows which it used.
  const forged = JSON.parse(handoffEnv(compiled)[HANDOFF_ENV]!) as { config: { hosts: Record<string, { agentPort: number }> } };
  assert.notEqual(forged.config.hosts.h1!.agentPort, 7391);
  forged.config.hosts.h1!.agentPort = 7391;
  const bin = path.resolve(import.meta.dirname, '../../../bin/understudy.js');
  const agent = spawn(process.execPath, [bin, 'agent', '--host', 'h1', '-c', file], {
    env: { ...process.env, [HANDOFF_ENV]: JSON.stringify(forged) },
    stdio: 'ignore',
  });
  try {
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = await fetch('http://127.0.251.1:7391/healthz').then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200, 'the agent listens on the handed-off port');
  } finally {
    agent.kill('SIGKILL');
  }
});
