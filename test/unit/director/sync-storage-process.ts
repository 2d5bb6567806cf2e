import { pino } from 'pino';
import type { UnderstudyConfig } from '../../../src/config/types.ts';
import { StorageProcessor } from '../../../src/storage/storage-processor.ts';
import { background } from '../../../src/shared/background.ts';

/**
 * One storage processor as its own process, for sync-fixture.ts (`storage: 'processes'`):
 *   node --import tsx sync-storage-process.ts NAME  (config JSON on stdin)
 * Prints "ready" once listening; stops cleanly on SIGTERM.
 */
const name = process.argv[2]!;
let text = '';
for await (const c of process.stdin) text += String(c);
const { config, tuning } = JSON.parse(text) as { config: UnderstudyConfig; tuning?: Record<string, number> };
const sp = new StorageProcessor(config, name, pino({ level: process.env.UNDERSTUDY_LOG_LEVEL ?? 'silent' }), tuning ? { tuning } : {});
await sp.start();
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  background(sp.stop().then(() => process.exit(0)));
});
