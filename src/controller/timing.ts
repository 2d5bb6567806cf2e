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
      throw Object.assign(new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${why}`), { code: 'US_TIMEOUT' });
    }
    await sleep(opts.everyMs);
  }
}
