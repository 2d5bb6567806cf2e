/**
 * Work started and not awaited (a timer's tick, a probe, a stop on a signal). Its
 * rejection must not vanish (a `void` promise loses its error) nor end the process as an
 * unhandled rejection: it is reported to `onError`, by default on stderr with its stack.
 */
export function background(work: Promise<unknown>, onError: (err: unknown) => void = reportOnStderr): void {
  work.catch(onError);
}

function reportOnStderr(err: unknown): void {
  process.stderr.write(`understudy: background work failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
}
