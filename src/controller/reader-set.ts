import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileDurable } from '../storage/fs-durable.ts';

/**
 * The readers each site has, kept in `<controller.state>/readers.json` so
 * that a restarted controller knows which hosts it lent to which site: the status
 * page shows them, the route keeps them, scale-in can give them back.
 *
 * `adding`: a scale-out runbook is bringing it up (not routed yet); `serving`: routed;
 * `removing`: a scale-in runbook is taking it out (no longer routed). A reader belongs
 * to the epoch it was made at: a change of primary (failover, switchover, restore)
 * makes it stale, and the scale controller removes it.
 */
export interface ReaderRecord {
  host: string;
  epoch: number;
  state: 'adding' | 'serving' | 'removing';
  since: number;
  reason: string;
}

const fileSchema = z.record(
  z.string(),
  z.array(
    z.object({
      host: z.string(),
      epoch: z.number().int().nonnegative(),
      state: z.enum(['adding', 'serving', 'removing']),
      since: z.number(),
      reason: z.string(),
    }),
  ),
);

export class ReaderSet {
  private readonly file: string;
  private data: Record<string, ReaderRecord[]>;
  private writing: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'readers.json');
    this.data = {};
    try {
      const r = fileSchema.safeParse(JSON.parse(fs.readFileSync(this.file, 'utf8')));
      if (r.success) this.data = r.data;
    } catch {
      // none yet (or unreadable: start empty; the hosts are found by their relays)
    }
  }

  private rev = 0;

  /** Grows at every change: what was computed from the readers stays good while it is the same. */
  get revision(): number {
    return this.rev;
  }

  of(site: string): ReaderRecord[] {
    return [...(this.data[site] ?? [])];
  }

  /** Hosts lent as readers to any site. */
  hostsInUse(): Set<string> {
    return new Set(
      Object.values(this.data)
        .flat()
        .map((r) => r.host),
    );
  }

  put(site: string, rec: ReaderRecord): Promise<void> {
    this.rev++;
    const list = (this.data[site] ?? []).filter((r) => r.host !== rec.host);
    list.push(rec);
    this.data[site] = list;
    return this.save();
  }

  remove(site: string, host: string): Promise<void> {
    this.rev++;
    this.data[site] = (this.data[site] ?? []).filter((r) => r.host !== host);
    return this.save();
  }

  /** Durable (temp + fsync + rename); writes are serialized in call order. */
  private save(): Promise<void> {
    const text = `${JSON.stringify(this.data, null, 2)}\n`;
    this.writing = this.writing.then(() => writeFileDurable(this.file, text)).catch(() => undefined);
    return this.writing;
  }
}
