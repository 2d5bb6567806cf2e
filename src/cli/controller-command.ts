import type { UnderstudyConfig } from '../config/types.ts';
import { startApiServer } from '../api/api-server.ts';
import { Controller } from '../controller/controller.ts';
import { isUnderstudyError } from '../shared/errors.ts';
import { Notifier } from '../notify/notifier.ts';
import { background } from '../shared/background.ts';

export interface ControllerService {
  controller: Controller;
  stop(): Promise<void>;
}

/**
 * Starts the controller and its API in this process: on its own
 * (`understudy controller`) or inside a storage processor
 * (`understudy storage --with-controller`), with the same behaviour. A start that
 * fails (the sites could not be started) is recorded as an event and rejected.
 */
export async function startControllerService(config: UnderstudyConfig): Promise<ControllerService> {
  const controller = new Controller(config);
  // Notifications are delivered from the state store's queue, beside the runbooks, never inside them.
  const notifier = new Notifier(config, controller.store, controller.log);
  const server = await startApiServer(controller, { notifier });
  notifier.start();
  const stop = async () => {
    notifier.stop();
    server.close();
    server.closeAllConnections();
    await controller.stop();
  };
  try {
    await controller.start();
  } catch (e) {
    // The cause, with its code, for `up` to print (start-failure.ts) and for the event log.
    const code = typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : 'US_INTERNAL';
    const details = isUnderstudyError(e) ? (e.details ?? null) : null;
    controller.log.error({ err: (e as Error).message, code }, 'controller could not start the sites');
    controller.store.addEvent({
      site: null,
      host: null,
      kind: 'controller-start-failed',
      message: `the controller could not start: ${(e as Error).message}`,
      data: { code, error: (e as Error).message, details },
    });
    await stop();
    throw e;
  }
  return { controller, stop };
}

/** `understudy controller -c FILE`: the controller and its API, until SIGTERM/SIGINT. */
export async function runController(config: UnderstudyConfig): Promise<void> {
  let service: ControllerService | null = null;
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    background(
      (service?.stop() ?? Promise.resolve()).then(() => process.exit(0)),
      (err) => {
        process.stderr.write(`understudy controller: stopping failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    service = await startControllerService(config);
  } catch (e) {
    // A failed start of the sites is logged above; one before (a bad environment variable) only here.
    process.stderr.write(`understudy controller: ${(e as Error).message}\n`);
    process.exit(1);
  }
}
