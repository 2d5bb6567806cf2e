import path from 'node:path';
import type { UnderstudyConfig } from '../config/types.ts';
import { HostAgent } from '../hosts/agent.ts';
import { background } from '../shared/background.ts';

/** `understudy agent --host NAME -c FILE`: one host's agent, until SIGTERM/SIGINT. */
export async function runAgent(config: UnderstudyConfig, host: string): Promise<void> {
  const agent = new HostAgent(config, host, path.join(config.controller.stateDir, 'logs'));
  await agent.start();
  const stop = async () => {
    await agent.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => background(stop()));
  process.on('SIGINT', () => background(stop()));
}
