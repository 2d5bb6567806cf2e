import { randomBytes } from 'node:crypto';
import { callJson } from '../shared/http-client.ts';
import type { DirectorLogger } from './logger.ts';

/**
 * Read your writes (DESIGN, "Rules that never break"): a client that just wrote keeps
 * reading from the primary until the readers have caught up with its write.
 *
 * The director numbers the modifying answers of a site (`seq`, per director process,
 * named by a random `boot` id) and gives the client a cookie `us_ryw_<site>=<boot>.<n>`
 * with the number of its latest write. A *mark* asks the storage processor holding
 * the primary volume to confirm that every reader copy serves everything committed
 * before the call (POST /v1/volumes/:site/readers/catch-up); a mark started when the
 * counter stood at W covers every write numbered ≤ W, and `covered` is the highest W
 * confirmed. A read may go to a reader only if its cookie's number is ≤ `covered`.
 *
 * Why that is enough: the app commits before it answers, the director numbers the
 * write when the answer's headers arrive, and the mark reads the counter before it
 * calls; so every write numbered ≤ W was committed before the catch-up call began,
 * and the storage processor acknowledges only what the reader copies have published
 * (reader-copies.ts). A reader added later got its copy from a catch-up the
 * controller ran before routing it, after its shipper existed: a write committed
 * before a mark that began earlier than that shipper is in its initial image; a mark
 * begun later covers that shipper too. A cookie from an earlier director process
 * (another `boot`) names a write answered before this process started, hence before
 * its first mark: it is covered once one mark has succeeded.
 *
 * Marks run one at a time, only while the site has readers and some write is not
 * covered (group commit: one mark covers every write numbered before it). A failed
 * or timed-out mark covers nothing: such clients read from the primary, the safe side.
 */
export interface RywTarget {
  storageUrl: string;
  timeoutMs: number;
}

export class ReadYourWrites {
  readonly cookieName: string;
  private readonly boot = randomBytes(4).toString('hex');
  private seq = 0;
  private covered = 0;
  /** One mark succeeded since this process started (covers other boots' cookies). */
  private marked = false;
  private running = false;
  private target: RywTarget | null = null;
  private hasReaders = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastError: string | null = null;

  constructor(
    private readonly site: string,
    private readonly logger: DirectorLogger,
  ) {
    this.cookieName = `us_ryw_${site.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  }

  /** The route's `ryw` and whether it names readers; starts a mark if one is due. */
  configure(target: RywTarget | null, hasReaders: boolean): void {
    const changed = target?.storageUrl !== this.target?.storageUrl;
    this.target = target;
    this.hasReaders = hasReaders;
    // Another primary storage: what the old one confirmed says nothing about the new copies.
    if (changed) {
      this.covered = 0;
      this.marked = false;
    }
    this.kick();
  }

  get enabled(): boolean {
    return this.target !== null;
  }

  /** A modifying request was answered: its Set-Cookie value. */
  noteWrite(): string {
    this.seq++;
    this.kick();
    return `${this.cookieName}=${this.boot}.${this.seq}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax`;
  }

  /** May a read carrying these cookies be served by a reader? */
  mayUseReaders(cookieHeader: string | string[] | undefined): boolean {
    if (cookieHeader === undefined) return true;
    const text = Array.isArray(cookieHeader) ? cookieHeader.join('; ') : cookieHeader;
    const at = text.indexOf(`${this.cookieName}=`);
    if (at < 0) return true;
    const value = text
      .slice(at + this.cookieName.length + 1)
      .split(';')[0]!
      .trim();
    const dot = value.indexOf('.');
    const boot = dot < 0 ? '' : value.slice(0, dot);
    const n = Number(value.slice(dot + 1));
    if (boot !== this.boot) return this.marked;
    if (!Number.isSafeInteger(n)) return false;
    return n <= this.covered;
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private kick(): void {
    if (this.running || this.stopped || this.target === null || !this.hasReaders || this.retryTimer !== null) return;
    if (this.seq <= this.covered && this.marked) return;
    const t = this.target;
    const w = this.seq;
    this.running = true;
    void callJson(`${t.storageUrl}/v1/volumes/${encodeURIComponent(this.site)}/readers/catch-up`, {
      body: { timeoutMs: t.timeoutMs },
      timeoutMs: t.timeoutMs + 1000,
    })
      .then(
        () => {
          this.lastError = null;
          if (this.target?.storageUrl !== t.storageUrl) return;
          if (w > this.covered) this.covered = w;
          this.marked = true;
        },
        (e: Error) => {
          if (this.lastError !== e.message)
            this.logger.warn({ site: this.site, err: e.message }, 'readers did not confirm catch-up; clients that wrote keep reading from the primary');
          this.lastError = e.message;
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.kick();
          }, 200);
        },
      )
      .finally(() => {
        this.running = false;
        this.kick();
      });
  }
}
