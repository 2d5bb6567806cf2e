import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { VerificationProblem, VerificationResult } from '../shared/contracts.ts';
import type { ShippedState } from './db-shipper.ts';
import { writeFileDurable } from './fs-durable.ts';
import { pageProblem, readPageSlice, type PageCursor } from './page-record.ts';
import type { ReplicaDbWriter } from './replica-db-writer.ts';
import { isWalModeDatabase, listDatabases } from './sqlite-file.ts';
import { checkLiveWal, type ChainCursor, type ChainReport, type WalEnd } from './wal-chain-check.ts';

/**
 * The live copy check: every `everyMs`, every live copy this storage processor holds (a
 * primary it ships, a replica it receives) is compared with what was shipped and
 * confirmed, database by database:
 *  - the WAL frame chain (wal-chain-check.ts): every committed frame — up to the WAL
 *    index's end on a primary, the acknowledged tail on a replica — and the last position
 *    the replica confirmed must verify, verbatim;
 *  - the db file (page-record.ts): every page no WAL frame supersedes must be the page
 *    that was shipped; up to `pageBytesPerRound` of each file per round, so a large file
 *    is covered over several rounds.
 * It reads files only (a WAL of a few MB and a slice of the db file: about 3 ms of
 * checksums per 4 MiB), so it can run every second, where quick_check (the full
 * verification, every 10 s) reads the whole database through SQLite and cannot see damage
 * that SQLite's own WAL index hides. A WAL longer than `walBytesPerRound` is judged a slice
 * per round (wal-chain-check.ts, ChainCursor), and the db file is then not compared (which
 * pages the WAL supersedes is not known without reading all of it): the cost of a round is
 * bounded, whatever the WAL's length.
 *
 * Results go to the processor (`report`), which adds them to the volume's verification,
 * so the controller raises `corruption-detected` with the file and the frame or page, and
 * acts (a corrupt primary: failover to a good replica, else a restore). A damaged replica
 * is also forgotten by its writer, so the source re-seeds it (ReplicaDbWriter.check).
 *
 * The position each copy holds is persisted (`<storage>/verify/<site>.wal.json`, when it
 * changed, at most once a round): after a restart of this processor it is what a new
 * generation, a fold and this check compare with — the only way to tell a copy that SQLite
 * already recovered short (its chain verifies, but ends early) from a good one.
 */
export interface LiveCopyCheckOptions {
  /** Interval of the check; 0 turns it off. @default 1000 */
  everyMs?: number;
  /** Bytes of each db file compared with its page record per round. @default 8 MiB */
  pageBytesPerRound?: number;
  /** Bytes of each WAL read per round; a longer WAL is judged over several rounds. @default 16 MiB */
  walBytesPerRound?: number;
}

/** Where the rounds are in one database: the next page of the db file, the next frame of a long WAL. */
interface DbCursor {
  pages: PageCursor;
  chain: ChainCursor;
}

/** A copy as the processor holds it, handed to the check under the volume lock. */
export type LiveCopy =
  { role: 'primary'; dir: string; shipped: ReadonlyMap<string, ShippedState> } | { role: 'replica'; dir: string; writer: (rel: string) => ReplicaDbWriter };

export interface LiveCopyHost {
  readonly storagePath: string;
  readonly log: Logger;
  /** Sites with a volume here. */
  sites(): string[];
  /** Runs `fn` on the site's copy under its volume lock; undefined when there is no live copy of it here. */
  withCopy<T>(site: string, fn: (copy: LiveCopy) => T): Promise<T | undefined>;
  /** A round's result for `site`; null: no live copy of it here any more. */
  report(site: string, result: VerificationResult | null): void;
}

export class LiveCopyCheck {
  private readonly opts: Required<LiveCopyCheckOptions>;
  private readonly cursors = new Map<string, DbCursor>();
  /** Positions persisted per site (loaded lazily), and what was last written. */
  private readonly ends = new Map<string, Record<string, WalEnd>>();
  private readonly written = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly host: LiveCopyHost,
    opts: LiveCopyCheckOptions = {},
  ) {
    this.opts = { everyMs: 1000, pageBytesPerRound: 8 << 20, walBytesPerRound: 16 << 20, ...opts };
  }

  start(): void {
    this.stopped = false;
    if (this.opts.everyMs <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      if (this.running || this.stopped) return;
      this.running = this.round()
        .catch((e: Error) => this.host.log.warn({ err: e.message }, 'live copy check failed'))
        .finally(() => {
          this.running = null;
        });
    }, this.opts.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One round over every site (also callable directly: tests, an operator's verify). */
  async round(): Promise<void> {
    for (const site of this.host.sites()) {
      if (this.stopped) return;
      await this.checkSite(site);
    }
  }

  /** Checks the live copy of `site` now and reports the result. */
  async checkSite(site: string): Promise<VerificationResult | null> {
    const t0 = performance.now();
    const out = await this.host.withCopy(site, (copy) => this.inspect(site, copy));
    if (!out) {
      this.host.report(site, null);
      return null;
    }
    await this.persist(site, out.ends);
    const result: VerificationResult = { ok: out.problems.length === 0, problems: out.problems, checkedAt: Date.now(), ms: Math.round(performance.now() - t0) };
    this.host.report(site, result);
    return result;
  }

  /** The position of `rel` this processor's copy of `site` held when it last persisted one. */
  knownEnd(site: string, rel: string): WalEnd | null {
    return this.persisted(site)[rel] ?? null;
  }

  /** Another copy was put in place (a restore): what was known of the old one no longer applies. */
  async forget(site: string): Promise<void> {
    this.ends.set(site, {});
    for (const k of [...this.cursors.keys()]) if (k.startsWith(`${site}/`)) this.cursors.delete(k);
    await this.persist(site, {});
  }

  private inspect(site: string, copy: LiveCopy): { problems: VerificationProblem[]; ends: Record<string, WalEnd> } {
    const problems: VerificationProblem[] = [];
    const ends: Record<string, WalEnd> = {};
    for (const rel of listDatabases(copy.dir)) {
      const abs = path.join(copy.dir, rel);
      const cursor = this.cursorOf(site, rel);
      if (copy.role === 'primary') {
        if (!isWalModeDatabase(abs)) continue; // not shipped: nothing is known of it
        const state = copy.shipped.get(rel) ?? null;
        const known = state?.end ?? this.knownEnd(site, rel);
        problems.push(
          ...checkPrimaryDatabase(abs, rel, state, known, cursor.pages, this.opts.pageBytesPerRound, {
            maxBytes: this.opts.walBytesPerRound,
            cursor: cursor.chain,
          }),
        );
        if (known) ends[rel] = known;
      } else {
        const w = copy.writer(rel);
        problems.push(...w.check(cursor.pages, this.opts.pageBytesPerRound, { maxBytes: this.opts.walBytesPerRound, cursor: cursor.chain }));
        const held = w.heldEnd() ?? this.knownEnd(site, rel);
        if (held) ends[rel] = held;
      }
    }
    return { problems, ends };
  }

  private cursorOf(site: string, rel: string): DbCursor {
    const k = `${site}/${rel}`;
    let c = this.cursors.get(k);
    if (!c) {
      c = { pages: { next: 1 }, chain: { salt1: 0, salt2: 0, next: 1 } };
      this.cursors.set(k, c);
    }
    return c;
  }

  private file(site: string): string {
    return path.join(this.host.storagePath, 'verify', `${site}.wal.json`);
  }

  private persisted(site: string): Record<string, WalEnd> {
    let e = this.ends.get(site);
    if (!e) {
      e = {};
      try {
        const raw = JSON.parse(fs.readFileSync(this.file(site), 'utf8')) as Record<string, WalEnd>;
        for (const [rel, v] of Object.entries(raw)) {
          if (v && [v.salt1, v.salt2, v.frame, v.checksum?.[0], v.checksum?.[1]].every((n) => Number.isInteger(n) && n >= 0))
            e[rel] = { salt1: v.salt1, salt2: v.salt2, frame: v.frame, checksum: [v.checksum[0], v.checksum[1]] };
        }
      } catch {
        /* none yet, or unreadable: nothing is known */
      }
      this.ends.set(site, e);
    }
    return e;
  }

  private async persist(site: string, ends: Record<string, WalEnd>): Promise<void> {
    const json = JSON.stringify(ends);
    if (this.written.get(site) === json) return;
    this.ends.set(site, ends);
    try {
      await writeFileDurable(this.file(site), json);
      this.written.set(site, json);
    } catch (e) {
      this.host.log.warn({ site, err: (e as Error).message }, 'cannot persist the confirmed WAL positions');
    }
  }
}

/**
 * One database of a live primary, without any lock (the app writes meanwhile): the WAL
 * against its index and the position the replica confirmed, and a slice of the db file
 * against the shipper's page record. The db file is read between the two index reads
 * and before the WAL (checkLiveWal's `between`), so every frame a checkpoint could have
 * copied into it meanwhile is among the frames read (`shadowed`, not judged). All of it
 * is synchronous: the shipper, in this process, cannot move its record meanwhile. A look
 * during a WAL restart is inconclusive and reports nothing; the next round decides.
 */
export function checkPrimaryDatabase(
  abs: string,
  rel: string,
  state: ShippedState | null,
  known: WalEnd | null,
  cursor: PageCursor,
  pageBytes: number,
  walBudget?: { maxBytes: number; cursor: ChainCursor },
): VerificationProblem[] {
  const record = state?.record ?? null;
  let slice: { buf: Buffer; from: number } | null = null;
  const chain: ChainReport = checkLiveWal(
    abs,
    rel,
    known,
    () => {
      if (record) slice = readPageSlice(abs, record, cursor, pageBytes);
    },
    walBudget,
  );
  if (!chain.conclusive) return [];
  const problems = [...chain.problems];
  const s = slice as { buf: Buffer; from: number } | null;
  // The record is at the shipped position of the WAL in the file: pages without frames
  // in it were last written before it began, and must be the record's (also when the WAL
  // is damaged: the report then names both files).
  if (record && s && state && chain.shadowed && chain.salts && chain.salts[0] === state.end.salt1 && chain.salts[1] === state.end.salt2) {
    const bad = record.differing(s.buf, s.from, chain.shadowed);
    if (bad.length > 0) problems.push(pageProblem(rel, bad, record.pageSize));
  }
  return problems;
}
