import { pino } from 'pino';
import type { UnderstudyConfig } from '../config/types.ts';
import { StorageProcessor } from '../storage/storage-processor.ts';

/**
 * `understudy storage --name NAME -c FILE`: runs one storage processor in the
 * foreground until SIGTERM or SIGINT, then stops it cleanly (server closed, shippers
 * stopped, SQLite handles closed) and resolves.
 */
export async function runStorage(opts: { config: UnderstudyConfig; name: string }): Promise<void> {
  const logger = pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const processor = new StorageProcessor(opts.config, opts.name, logger);
  await processor.start();
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping storage processor');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      processor.stop().then(resolve, (e: unknown) => {
        logger.error({ err: e instanceof Error ? e.message : String(e) }, 'storage processor did not stop cleanly');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
