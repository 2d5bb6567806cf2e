import type http from 'node:http';
import type { EventRecord, JournalEntry, StateStore } from '../state/state-store.ts';

/** A comment line this often keeps idle proxies and clients from closing the stream. */
const HEARTBEAT_MS = 15_000;
/** Backlog sent per page when a client resumes far behind. */
const PAGE = 500;

/** A runbook step as the stream sends it (event type `step`): live only, never replayed. */
export interface StepMessage {
  runbook: number;
  site: string;
  kind: string;
  step: string;
  phase: JournalEntry['phase'];
  at: number;
  /** How long the step took (on `end`). */
  ms?: number;
  error?: string;
}

/**
 * `GET /v1/events/stream`: the event log as Server-Sent Events.
 *
 * Every event is sent as `id: <event id>` + `data: <EventRecord JSON>` (type
 * `message`), in id order and without gaps: a client that reconnects with
 * `Last-Event-ID: N` (or `?after=N`) gets every event after N, then the live ones;
 * without either it starts with the live ones (`?tail=N`: the last N events first).
 * Runbook steps are sent as `event: step` without an id (they are live progress; the
 * journal itself is in GET /v1/runbooks). `?site=` keeps one site's events and steps.
 *
 * No event can fall between the backlog and the live feed: the backlog is read and
 * the listener attached in one synchronous stretch (the store is synchronous), and
 * anything at or below the last id sent is dropped.
 */
export function serveEventStream(store: StateStore, req: http.IncomingMessage, res: http.ServerResponse, query: URLSearchParams): void {
  const header = req.headers['last-event-id'];
  const fromHeader = typeof header === 'string' && /^\d+$/.test(header.trim()) ? Number(header.trim()) : undefined;
  const fromQuery = /^\d+$/.test(query.get('after') ?? '') ? Number(query.get('after')) : undefined;
  const tail = /^\d+$/.test(query.get('tail') ?? '') ? Math.min(Number(query.get('tail')), 5000) : 0;
  let lastSent = fromHeader ?? fromQuery ?? Math.max(0, store.lastEventId() - tail);
  const site = query.get('site') ?? undefined;

  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write('retry: 1000\n\n');

  const sendEvent = (e: EventRecord): void => {
    if (e.id <= lastSent) return;
    lastSent = e.id;
    res.write(`id: ${e.id}\ndata: ${JSON.stringify(e)}\n\n`);
  };
  // The backlog, page by page; then the live feed.
  while (true) {
    const page = store.listEvents({ afterId: lastSent, limit: PAGE, ...(site !== undefined ? { site } : {}) });
    for (const e of page) sendEvent(e);
    if (page.length < PAGE) break;
  }
  const offEvent = store.onEvent((e) => {
    if (site === undefined || e.site === site) sendEvent(e);
  });
  const offJournal = store.onJournal((j, rb) => {
    if (site !== undefined && rb.site !== site) return;
    const msg: StepMessage = {
      runbook: j.runbookId,
      site: rb.site,
      kind: rb.kind,
      step: j.step,
      phase: j.phase,
      at: j.at,
      ...(typeof j.data.ms === 'number' ? { ms: j.data.ms } : {}),
      ...(typeof j.data.error === 'string' ? { error: j.data.error } : {}),
    };
    res.write(`event: step\ndata: ${JSON.stringify(msg)}\n\n`);
  });
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
  // The store closes when a controller's term ends (several controllers): the stream ends,
  // and the client reconnects (`retry: 1000`) to the next term's store with Last-Event-ID.
  const offClose = store.onClose(() => {
    close();
    res.end();
  });
  const close = (): void => {
    clearInterval(heartbeat);
    offEvent();
    offJournal();
    offClose();
  };
  req.on('close', close);
  res.on('error', close);
}
