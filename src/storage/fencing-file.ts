import fs from 'node:fs';
import path from 'node:path';
import { UnderstudyError } from '../shared/errors.ts';
import type { KeptToken } from '../shared/fencing.ts';
import { writeFileDurable } from './fs-durable.ts';

/** Where a storage processor keeps the highest fencing token it has seen (fencing.ts). */
export function fencingFile(storagePath: string): string {
  return path.join(storagePath, 'meta', 'fencing-token');
}

/** The highest token kept in `file`: 0 while there is none, written durably. */
export function tokenKeptIn(file: string): KeptToken {
  return {
    read() {
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw e;
      }
      const n = Number(text.trim());
      if (!Number.isSafeInteger(n) || n < 0)
        throw new UnderstudyError(
          'US_INTERNAL',
          `${file} holds no fencing token ("${text.trim().slice(0, 40)}"): remove it, and the next leader's token is taken`,
        );
      return n;
    },
    write: (token) => writeFileDurable(file, `${token}\n`),
  };
}
