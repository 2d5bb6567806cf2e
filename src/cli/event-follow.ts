import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Agent, request } from 'undici';
import type { StepMessage } from '../api/event-stream.ts';
import { UnderstudyError } from '../shared/errors.ts';
import type { EventRecord } from '../state/state-store.ts';
import { apiAccess, type ApiOptions } from './api-client.ts';

export interface FollowHandlers {
  event: (e: EventRecord) => void;
  step?: (s: StepMessage) => void;
  /** The stream broke (the controller restarts?): said once per outage, with what will happen. */
  lost?: (why: string) => void;
  resumed?: () => void;
}

/**
 * Follows `GET /v1/events/stream` (Server-Sent Events) from event id `after` on, for
 * ever: a broken stream is opened again after the server's `retry` delay with
 * `Last-Event-ID`, so no event is missed or printed twice across a controller restart.
 * Rejects only on a refusal that retrying cannot fix (401, 404).
 */
export async function followEvents(opts: ApiOptions, after: number, on: FollowHandlers, signal?: AbortSignal): Promise<void> {
  const access = await apiAccess(opts);
  const url = `${access.base}/v1/events/stream`;
  const token = access.token;
  const dispatcher = access.ca ? new Agent({ connect: { ca: access.ca } }) : undefined;
  let lastId = after;
  let retryMs = 1000;
  let down = false;
  while (!signal?.aborted) {
    try {
      const res = await request(url, {
        method: 'GET',
        headers: { accept: 'text/event-stream', 'last-event-id': String(lastId), ...(token ? { authorization: `Bearer ${token}` } : {}) },
        headersTimeout: 10_000,
        bodyTimeout: 0,
        ...(signal ? { signal } : {}),
        ...(dispatcher ? { dispatcher } : {}),
      });
      if (res.statusCode === 401 || res.statusCode === 404) {
        const body = await res.body.text();
        let message = body;
        try {
          message = (JSON.parse(body) as { error: { message: string } }).error.message;
        } catch {
          /* not JSON */
        }
        throw new UnderstudyError(res.statusCode === 401 ? 'US_UNAUTHORIZED' : 'US_NOT_FOUND', message);
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`the events stream answered ${res.statusCode}`);
      }
      if (down) {
        down = false;
        on.resumed?.();
      }
      const parser = createParser({
        onEvent: (m: EventSourceMessage) => {
          if (m.event === 'step') {
            on.step?.(JSON.parse(m.data) as StepMessage);
            return;
          }
          const e = JSON.parse(m.data) as EventRecord;
          if (e.id <= lastId) return;
          lastId = e.id;
          on.event(e);
        },
        onRetry: (ms: number) => {
          retryMs = ms;
        },
      });
      for await (const chunk of res.body) parser.feed((chunk as Buffer).toString('utf8'));
      throw new Error('the controller closed the events stream');
    } catch (e) {
      if (e instanceof UnderstudyError || signal?.aborted) {
        if (signal?.aborted) return;
        throw e;
      }
      if (!down) {
        down = true;
        on.lost?.(`${(e as Error).message}; reconnecting from event #${lastId}`);
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }
}
