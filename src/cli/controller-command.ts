import type { UnderstudyConfig } from '../config/types.ts';
import { startApiServer } from '../api/api-server.ts';
import { Controller } from '../controller/controller.ts';

/** `understudy controller -c FILE`: the controller and its API, until SIGTERM/SIGINT. */
export async function runController(config: UnderstudyConfig): Promise<void> {
  const controller = new Controller(config);
  const server = await startApiServer(controller);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections();
    await controller.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  try {
    await controller.start();
  } catch (e) {
    controller.log.error({ err: (e as Error).message }, 'controller could not start the sites');
    controller.store.addEvent({ site: null, host: null, kind: 'controller-start-failed', message: `the controller could not start: ${(e as Error).message}`, data: {} });
    process.exitCode = 1;
    await stop();
  }
}
