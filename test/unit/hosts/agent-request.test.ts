import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { HostAgent } from '../../../src/hosts/agent.ts';
import { MINIMAL, cleanup, load } from '../config/helpers.ts';

after(cleanup);

/** The agent refuses a start request that is not one, naming each field that is wrong, and starts nothing. */
test('a bad start request is refused with US_BAD_REQUEST naming the fields; nothing is started', async () => {
  const config = load(MINIMAL.replace('h1: { address: 127.0.1.1, storage: array-a }', 'h1: { address: 127.0.253.1, storage: array-a, agentPort: 7419 }'));
  const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'us-agent-req-'));
  const agent = new HostAgent(config, 'h1', logs);
  await agent.start();
  try {
    const put = async (body: unknown) => {
      const r = await fetch('http://127.0.253.1:7419/v1/sites/shop', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as { error?: { code: string; message: string }; sites?: unknown[] } };
    };
    const bad = await put({ epoch: -1, command: [], cwd: '/tmp', dataDir: '/tmp', env: { A: 1 }, mode: 'rx', listen: { address: '127.0.253.1', port: 70000 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error?.code, 'US_BAD_REQUEST');
    for (const field of ['epoch', 'command', 'env.A', 'mode', 'listen.port'])
      assert.match(bad.body.error!.message, new RegExp(`(^|; )${field.replace('.', '\\.')}: `), `names ${field}`);
    assert.equal((await put('not an object')).body.error?.code, 'US_BAD_REQUEST');
    const status = (await (await fetch('http://127.0.253.1:7419/v1/status')).json()) as { sites: unknown[] };
    assert.deepEqual(status.sites, [], 'nothing started');
  } finally {
    await agent.stop();
    fs.rmSync(logs, { recursive: true, force: true });
  }
});
