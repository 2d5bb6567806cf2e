import path from 'node:path';
import { hasSqliteMagic, listDatabases } from './sqlite-file.ts';

/**
 * Checks that every `*.db` file in a volume is an SQLite database (starts with the
 * header magic "SQLite format 3\0"). Returns one operator-facing problem per bad file,
 * naming its absolute path; empty when all is well. `up` calls this before it starts
 * anything; `init` refuses a volume with problems (US_VOLUME_NOT_DATABASE).
 */
export function checkVolumeDatabases(dir: string): string[] {
  const problems: string[] = [];
  for (const rel of listDatabases(dir)) {
    const abs = path.resolve(dir, rel);
    if (!hasSqliteMagic(abs)) problems.push(`${abs}: is not an SQLite database: restore it from a backup or remove it`);
  }
  return problems;
}
