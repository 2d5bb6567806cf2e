import { UnderstudyError } from '../shared/errors.ts';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Retries `fn` every `everyMs` until it resolves truthy or `timeoutMs` passes; returns the last value or throws the last error. */
export async function waitFor<T>(fn: () => Promise<T>, opts: { timeoutMs: number; everyMs: number; what: string }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown = null;
  while (true) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new UnderstudyError('US_TIMEOUT', `timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${why}`);
    }
    await sleep(opts.everyMs);
  }
}
