import { pino } from 'pino';
import type { UnderstudyConfig } from '../config/types.ts';
import { StorageProcessor } from '../storage/storage-processor.ts';
import type { ControllerService } from './controller-command.ts';

/**
 * `understudy storage --name NAME -c FILE`: runs one storage processor in the
 * foreground until SIGTERM or SIGINT, then stops it cleanly (server closed, shippers
 * stopped, SQLite handles closed) and resolves.
 *
 * With `withController`, the controller runs inside this storage processor's
 * process (the controller on the storage system's processor):
 * the same controller, API and behaviour as `understudy controller`, started once
 * the storage processor answers, stopped before it.
 */
export async function runStorage(opts: { config: UnderstudyConfig; name: string; withController?: boolean }): Promise<void> {
  const logger = pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const processor = new StorageProcessor(opts.config, opts.name, logger);
  await processor.start();
  let controller: ControllerService | null = null;
  if (opts.withController) {
    const { startControllerService } = await import('./controller-command.ts');
    try {
      controller = await startControllerService(opts.config);
    } catch (e) {
      process.stderr.write(`understudy storage --with-controller: ${(e as Error).message}\n`);
      await processor.stop();
      process.exit(1);
    }
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping storage processor');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      (controller?.stop() ?? Promise.resolve())
        .then(() => processor.stop())
        .then(resolve, (e: unknown) => {
          logger.error({ err: e instanceof Error ? e.message : String(e) }, 'storage processor did not stop cleanly');
          resolve();
        });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
