/**
 * Runs `fn` for every item, at most `limit` at a time, in the items' order. After a
 * failure no new item is begun; the ones under way are waited for, then the first
 * failure is thrown (as one after another would have stopped at it).
 */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failed: { error: unknown } | null = null;
  const lane = async (): Promise<void> => {
    while (failed === null && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        failed ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failed !== null) throw (failed as { error: unknown }).error;
}
