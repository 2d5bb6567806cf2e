import type { FencingView } from '../shared/contracts.ts';
import type { NewEvent } from '../state/state-store.ts';

/**
 * The refusals the parts' fencing gates report in their status (shared/fencing.ts),
 * as events: a `stale-leader-refused` each time a part has refused more commands of a
 * controller that no longer leads. A part seen for the first time counts only a refusal
 * made since this controller's term began (an older one was recorded by the term it
 * happened in, or by nobody when no controller led).
 */
export class FencingRefusals {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly addEvent: (e: NewEvent) => void,
    private readonly since: number,
  ) {}

  observe(part: string, host: string | null, view: FencingView | undefined): void {
    if (!view) return;
    const before = this.seen.get(part);
    this.seen.set(part, view.refused);
    const last = view.lastRefused;
    if (!last) return;
    const fresh = before === undefined ? (last.at >= this.since ? 1 : 0) : view.refused - before;
    if (fresh <= 0) return;
    this.addEvent({
      site: null,
      host,
      kind: 'stale-leader-refused',
      message: `${part} refused ${fresh} command(s) from a controller that no longer leads: the newest, ${last.method} ${last.url}, carried fencing token ${last.token} where ${last.highest} was seen; that controller must stop acting`,
      data: { part, refused: fresh, token: last.token, highest: last.highest, method: last.method, url: last.url, at: last.at },
    });
  }
}
