import type http from 'node:http';
import { UnderstudyError } from './errors.ts';
import type { FencingView } from './contracts.ts';

/**
 * Fencing tokens: what keeps a controller that lost the lead from acting through the
 * parts. A leader's term has a token that only grows from one term to the next (the
 * leader key's create revision, leader-lease.ts); the leader sends it on every call to
 * a part, and a part refuses a command whose token is lower than the highest it has
 * seen (a lease is not a mutex: a leader paused past its lease may still send what it
 * prepared). Reads are never refused, and a call without a token (the embedded default,
 * where one controller runs without a lease; an operator's own call) is not checked.
 *
 * The sending side is the controller's calls to the parts (PartClients, which adds the
 * header while its term holds one): only the controller's, not its process's — a
 * storage processor that runs the controller inside ships its replication without a
 * token. The receiving side is a FencingGate in each part's JSON server (http-json.ts).
 */
export const FENCING_HEADER = 'x-understudy-fencing-token';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The token a request carries: null when none; US_BAD_REQUEST when it is not a whole number. */
export function tokenOf(headers: http.IncomingHttpHeaders): number | null {
  const v = headers[FENCING_HEADER];
  if (v === undefined) return null;
  const s = Array.isArray(v) ? v[0]! : v;
  if (!/^[0-9]{1,15}$/.test(s)) throw new UnderstudyError('US_BAD_REQUEST', `${FENCING_HEADER}: "${s}" is not a fencing token (a whole number)`);
  return Number(s);
}

/** Where a part keeps the highest token across restarts (the storage processors: storage/fencing-file.ts). */
export interface KeptToken {
  read(): number;
  /** Durably: on disk when it resolves. */
  write(token: number): Promise<void>;
}

/**
 * A part's side: the highest token seen, and the refusal of lower ones. With a `store`,
 * the highest token is kept there (written durably before the command that raised it
 * runs), so a restarted part still refuses the old leader: the storage processors, whose
 * commands (promote, demote, replicate) decide who writes. Without one it lives as long
 * as the process (a director, an agent: the leader talks to them all the time, so a
 * restarted one learns the current token at once).
 */
export class FencingGate {
  private highest: number;
  /** The highest token known to be kept (written). */
  private kept: number;
  private writing: Promise<void> = Promise.resolve();
  private refused = 0;
  private lastRefused: FencingView['lastRefused'] = null;

  constructor(
    private readonly part: string,
    private readonly store: KeptToken | null = null,
    private readonly onRefused?: (token: number, highest: number, req: { method: string; url: string }) => void,
  ) {
    this.highest = store?.read() ?? 0;
    this.kept = this.highest;
  }

  /** The highest token seen (0: none). */
  get seen(): number {
    return this.highest;
  }

  /** For the part's status: null while no token was ever seen (the embedded default). */
  view(): FencingView | null {
    return this.highest === 0 && this.refused === 0 ? null : { highest: this.highest, refused: this.refused, lastRefused: this.lastRefused };
  }

  /** Refuses a command with a lower token than seen; raises (and keeps) a higher one. Reads pass. */
  async admit(req: http.IncomingMessage): Promise<void> {
    const method = req.method ?? 'GET';
    if (READS.has(method)) return;
    const token = tokenOf(req.headers);
    if (token === null) return;
    if (token < this.highest) {
      this.refused++;
      this.lastRefused = { token, highest: this.highest, method, url: req.url ?? '', at: Date.now() };
      this.onRefused?.(token, this.highest, { method, url: req.url ?? '' });
      throw new UnderstudyError(
        'US_STALE_LEADER',
        `${this.part} refuses ${method} ${req.url ?? ''}: its fencing token ${token} is lower than ${this.highest}, which a newer leader sent; the sender no longer leads and must stop acting`,
        { token, highest: this.highest },
      );
    }
    this.highest = Math.max(this.highest, token);
    await this.keep(token);
  }

  /** Resolves once a token at least `token` is kept: writes run one at a time, each the highest seen then. */
  private keep(token: number): Promise<void> {
    const store = this.store;
    if (store === null || this.kept >= token) return Promise.resolve();
    const write = this.writing.then(async () => {
      if (this.kept >= token) return;
      const highest = this.highest;
      await store.write(highest);
      this.kept = Math.max(this.kept, highest);
    });
    this.writing = write.catch(() => undefined);
    return write;
  }
}
