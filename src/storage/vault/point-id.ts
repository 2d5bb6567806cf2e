/**
 * Restore point ids: the ISO time the point was taken, with ':' written as '-' so that
 * an id is a safe file name and URL segment (`2025-03-01T12-00-05.123Z`). Ids sort as
 * their times do (fixed width, UTC).
 */
const POINT_ID_RE = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z$/;

export function pointIdOf(takenAt: number): string {
  return new Date(takenAt).toISOString().replace(/:/g, '-');
}

export function isPointId(s: string): boolean {
  return POINT_ID_RE.test(s);
}
