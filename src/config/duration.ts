/**
 * Durations as operators write them: "200ms", "5s", "1m", "1.5s", "1h", "1m30s".
 * A bare number is refused on purpose: "200" could mean ms or s, and a wrong
 * guess turns a 200 ms probe into a 3-minute one.
 */

export const DURATION_MESSAGE = 'must be a duration like 200ms';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * Parses a duration into whole milliseconds (rounded), or returns undefined when
 * `text` is not one. Units: ms, s, m, h; parts may be combined ("1m30s").
 */
export function parseDuration(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const s = text.trim();
  if (s === '') return undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const m = PART.exec(s);
    if (m === null) return undefined;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return Math.round(total);
}

/** Formats milliseconds back for messages: 1500 → "1.5s", 200 → "200ms". */
export function formatDuration(ms: number): string {
  if (ms < 1000 || ms % 100 !== 0) return `${ms}ms`;
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}
