import { endpointUrl, type UnderstudyConfig } from '../config/types.ts';
import { Director } from '../director/director.ts';
import { defaultLogger } from '../director/logger.ts';

/**
 * `understudy director -c FILE`: runs the built-in director in the foreground as
 * its own process. It signals connection errors to the controller at
 * controller.listen, and stops cleanly on SIGTERM / SIGINT: held requests get
 * 503 + Retry-After, in-flight ones get a short grace, then the process may exit.
 * Resolves once stopped.
 */
export async function runDirector(opts: { config: UnderstudyConfig }): Promise<void> {
  const logger = defaultLogger();
  const director = new Director({ config: opts.config, controllerUrl: endpointUrl(opts.config.controller.listen), logger });
  await director.start();
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      logger.info({ signal }, 'director stopping');
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await director.stop();
}
